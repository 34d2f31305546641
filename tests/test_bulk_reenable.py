"""Bulk Re-enable (O5), "Degraded" on the overview (O1) and the users' `?health=` filter that
agrees with what the console counts (issue 14, finding 1: a held user was missing from
`?health=unhealthy`; finding 8: a never-tested user is not healthy)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from syncadmin.models import AuditEntry
from synccore.models import SynchronizerState, SyncUser
from synccore.sync import runs
from synccore.sync.readable import Readable
from tests.fixtures.api import *  # noqa: F403  (fixtures)
from tests.fixtures.api import user_with_role

pytestmark = pytest.mark.django_db


def url(env, tail=""):
    return f"/api/v1/environments/{env.pk}/users/{tail}"


def set_state(env, email: str, **kinds: str) -> SyncUser:
    user = SyncUser.objects.get(environment=env, mailbox_email=email)
    for kind, state in kinds.items():
        reason = None if state == runs.HEALTHY else Readable("x", f"{kind} is {state}.")
        fields = runs.set_kind_state(user, kind, state, at=timezone.now(), readable=reason)
        user.save(update_fields=[*fields, "updated_at"])
    return user


@pytest.fixture
def troubled(env):
    """Alice failing, Bob held, Carol healthy, Dave never tested (the calendar: the only kind on)."""
    from tests.fixtures import factories as f

    f.sync_user(env, "carol@contoso.example")
    f.sync_user(env, "dave@contoso.example")
    set_state(env, "alice@contoso.example", calendar=runs.FAILING)
    set_state(env, "bob@contoso.example", calendar=runs.HELD)
    set_state(env, "carol@contoso.example", calendar=runs.HEALTHY)
    return env


def emails(response) -> list[str]:
    assert response.status_code == 200, response.content
    return sorted(u["mailbox_email"] for u in response.json())


def test_o1_the_health_filter_agrees_with_the_console(viewer_api, troubled):
    env = troubled
    # "unhealthy" is what the overview counts as unhealthy: held and backing off too.
    assert emails(viewer_api.get(url(env, "?health=unhealthy"))) == ["alice@contoso.example", "bob@contoso.example"]
    assert emails(viewer_api.get(url(env, "?health=failing"))) == ["alice@contoso.example"]
    assert emails(viewer_api.get(url(env, "?health=held"))) == ["bob@contoso.example"]
    # A user no pass has reached yet is not healthy (finding 8): it has a filter of its own.
    assert emails(viewer_api.get(url(env, "?health=healthy"))) == ["carol@contoso.example"]
    assert emails(viewer_api.get(url(env, "?health=never_tested"))) == ["dave@contoso.example"]
    SyncUser.objects.filter(mailbox_email="carol@contoso.example").update(active=False)
    assert emails(viewer_api.get(url(env, "?health=inactive"))) == ["carol@contoso.example"]
    response = viewer_api.get(url(env, "?health=sad"))
    assert response.status_code == 400 and "never_tested" in str(response.json()["health"])


def test_o5_bulk_re_enable_over_the_api_takes_ids_and_addresses_and_is_audited(admin_api, troubled):
    env = troubled
    alice = SyncUser.objects.get(mailbox_email="alice@contoso.example")
    response = admin_api.post(url(env, "re-enable/"), {"users": [alice.pk, "Bob@contoso.example"]}, format="json")
    assert response.status_code == 200
    body = {u["mailbox_email"]: u["health"] for u in response.json()}
    # Re-enable clears failing and backing-off kinds; a held kind waits for Confirm deletions.
    assert body == {"alice@contoso.example": "healthy", "bob@contoso.example": "held"}
    assert sorted(AuditEntry.objects.filter(action="user_re_enabled").values_list("target", flat=True)) == [
        "alice@contoso.example",
        "bob@contoso.example",
    ]


def test_o5_bulk_re_enable_names_unknown_users_and_changes_nothing(admin_api, viewer_api, troubled):
    env = troubled
    response = admin_api.post(
        url(env, "re-enable/"), {"users": ["alice@contoso.example", "zed@contoso.example", 999999]}, format="json"
    )
    assert response.status_code == 400
    assert "zed@contoso.example" in str(response.json()) and "999999" in str(response.json())
    assert SyncUser.objects.get(mailbox_email="alice@contoso.example").health == "unhealthy"
    assert admin_api.post(url(env, "re-enable/"), {"users": []}, format="json").status_code == 400
    assert viewer_api.post(url(env, "re-enable/"), {"users": ["alice@contoso.example"]}, format="json").status_code == 403


def test_o5_bulk_re_enable_in_the_console(client, troubled):
    env = troubled
    client.force_login(user_with_role("administrator"))
    page = client.get(f"/environments/{env.pk}/").content.decode()
    assert 'data-action="re-enable-selected"' in page and 'form="bulk-users"' in page
    alice = SyncUser.objects.get(mailbox_email="alice@contoso.example")
    carol = SyncUser.objects.get(mailbox_email="carol@contoso.example")
    response = client.post(f"/environments/{env.pk}/re-enable/", {"users": [alice.pk, carol.pk]}, follow=True)
    assert "Re-enabled: alice@contoso.example, carol@contoso.example." in response.content.decode()
    assert SyncUser.objects.get(pk=alice.pk).health == "healthy"
    response = client.post(f"/environments/{env.pk}/re-enable/", {}, follow=True)
    assert "Tick the users to re-enable first." in response.content.decode()


def test_o1_the_overview_shows_degraded_beside_running(client, troubled):
    env = troubled
    client.force_login(user_with_role("viewer"))

    def badge() -> str:
        page = client.get("/").content.decode()
        return page.split('data-field="degraded"', 1)[1].split(">", 1)[0]

    assert "hidden" in badge()  # stopped: not degraded
    env.set_state(SynchronizerState.RUNNING)
    assert "hidden" not in badge()
