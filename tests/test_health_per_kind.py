"""Health per user and per kind (O1, O2, O4; issue 14 findings 1, 3, 5, 8): a held, failing,
backing-off or never-tested mailbox is never shown healthy, one kind's pass never clears another
kind's state, a cleared error disappears, and Sync now waits for a running synchronizer."""

from __future__ import annotations

import pytest

from synccore.mailbox.base import TransientMailboxError
from synccore.models import Contact, Health, SyncUser
from synccore.runtime import service
from synccore.sync import runs
from synccore.sync.calendar import run_calendar_pass
from synccore.sync.runs import PassContext
from tests.fixtures import factories as f
from tests.fixtures.api import client_for, user_with_role

pytestmark = pytest.mark.django_db


def hold_alices_contacts(crm) -> None:
    """A filter change that would delete 6 of 10 contacts: the contact pass is held."""
    crm.configure(safety_limit_percent=20, safety_limit_minimum=3)
    contacts = [f.contact(crm.env, first_name="Ann", last_name=f"Lee {i:02d}") for i in range(10)]
    crm.contacts_pass()
    Contact.objects.filter(pk__in=[c.pk for c in contacts[:6]]).update(synchronize=False)
    assert crm.contacts_pass().outcome == "held"


def alice_status(crm) -> dict:
    return next(u for u in service.status(crm.env.pk)["users"] if u["email"] == crm.alice.mailbox_email)


def test_a_held_contact_pass_is_not_cleared_by_the_calendar_pass_after_it(crm):
    hold_alices_contacts(crm)
    assert run_calendar_pass(crm.alice.pk, PassContext()).outcome == "success"
    crm.alice.refresh_from_db()
    assert crm.alice.health == Health.HELD
    status = alice_status(crm)
    assert (status["state"], status["contacts"]["state"], status["calendar"]["state"]) == (
        "held",
        "held",
        "healthy",
    )
    assert "Confirm the deletions" in status["contacts"]["reason"]
    api = client_for(user_with_role("viewer"))
    held = api.get(f"/api/v1/environments/{crm.env.pk}/users/?health=held").json()
    assert [u["mailbox_email"] for u in held] == [crm.alice.mailbox_email]


def test_a_held_user_is_in_needs_attention_with_confirm_deletions(client, crm):
    hold_alices_contacts(crm)
    run_calendar_pass(crm.alice.pk, PassContext())
    client.force_login(user_with_role("administrator"))
    page = client.get(f"/environments/{crm.env.pk}/?tab=attention").content.decode()
    row = page.split(f'data-attention-user="{crm.alice.mailbox_email}" data-kind="contacts"', 1)[1]
    row = row.split("</tr>", 1)[0]
    assert "Held by the safety limit" in row and 'data-action="confirm-deletions"' in row
    assert '<span class="count">1</span>' in page.split('data-tab="attention"', 1)[1].split("</a>", 1)[0]
    client.post(f"/environments/{crm.env.pk}/users/{crm.alice.pk}/confirm-deletions/")
    crm.alice.refresh_from_db()
    assert crm.alice.deletions_confirmed and crm.alice.health == Health.HEALTHY


def test_confirming_deletions_leaves_another_kinds_failure(crm):
    hold_alices_contacts(crm)
    crm.sim.faults.unauthorized(times=None)
    run_calendar_pass(crm.alice.pk, PassContext())
    crm.sim.faults.clear()
    service.confirm_deletions(crm.alice.pk)
    crm.alice.refresh_from_db()
    assert crm.alice.health == Health.UNHEALTHY
    assert alice_status(crm)["calendar"]["state"] == "failing"


def test_a_fixed_password_and_re_enable_leave_no_stale_error(crm):
    crm.sim.faults.unauthorized(times=None)
    crm.contacts_pass()
    crm.alice.refresh_from_db()
    assert crm.alice.health == Health.UNHEALTHY
    assert crm.alice.last_error.startswith("Exchange at") and "credentials" in crm.alice.last_error
    assert "UnauthorizedError" in alice_status(crm)["contacts"]["detail"]
    crm.sim.faults.clear()
    service.reenable(crm.alice.pk)
    crm.alice.refresh_from_db()
    assert (crm.alice.health, crm.alice.last_error) == (Health.HEALTHY, "")
    assert crm.contacts_pass().outcome == "success"
    crm.alice.refresh_from_db()
    assert (crm.alice.health, crm.alice.last_error, crm.alice.last_error_at) == (Health.HEALTHY, "", None)


def test_a_transient_error_clears_once_the_kind_succeeds_again(crm):
    run = runs.start_run(crm.alice, "contacts", PassContext())
    error = TransientMailboxError("Exchange is not answering normally (TransportError: reset).")
    runs.fail_run(run, crm.alice, error, requests=1)
    crm.alice.refresh_from_db()
    assert crm.alice.health == Health.BACKING_OFF and crm.alice.backoff_until
    assert crm.alice.last_error.startswith("Exchange at") and "TransportError" not in crm.alice.last_error
    assert crm.contacts_pass().outcome == "success"
    crm.alice.refresh_from_db()
    assert (crm.alice.health, crm.alice.last_error, crm.alice.backoff_until) == (Health.HEALTHY, "", None)


def test_a_user_that_never_had_a_pass_is_never_tested_not_healthy(client, crm):
    f.sync_user(crm.env, "aaron@contoso.example")  # no such mailbox, and no pass yet
    status = next(u for u in service.status(crm.env.pk)["users"] if u["email"] == "aaron@contoso.example")
    assert status["state"] == "never_tested"
    assert status["contacts"]["state"] == status["calendar"]["state"] == "never_tested"
    client.force_login(user_with_role("viewer"))
    page = client.get(f"/environments/{crm.env.pk}/").content.decode()
    row = page.split('<tr data-user="aaron@contoso.example">', 1)[1].split("</tr>", 1)[0]
    assert 'data-field="health">Never tested<' in row and ">Healthy<" not in row


def test_an_inactive_user_is_inactive(crm):
    SyncUser.objects.filter(pk=crm.bob.pk).update(active=False)
    status = next(u for u in service.status(crm.env.pk)["users"] if u["email"] == crm.bob.mailbox_email)
    assert status["state"] == status["contacts"]["state"] == "inactive"


def test_the_environment_is_degraded_while_running_with_a_user_not_healthy(crm):
    crm.env.set_state("running")
    crm.contacts_pass(crm.bob)
    assert service.status(crm.env.pk)["degraded"] is False
    crm.sim.faults.unauthorized(times=None)
    crm.contacts_pass()
    assert service.status(crm.env.pk)["degraded"] is True
    crm.env.set_state("stopped")
    assert service.status(crm.env.pk)["degraded"] is False


def test_sync_now_is_refused_while_stopped_in_the_console_and_the_api(client, crm):
    operator = user_with_role("operator")
    response = client_for(operator).post(f"/api/v1/environments/{crm.env.pk}/sync-now/", {}, format="json")
    assert response.status_code == 409 and "start the synchronizer first" in response.json()["detail"]
    client.force_login(operator)
    page = client.post(f"/environments/{crm.env.pk}/sync-now/", {"kind": "all"}, follow=True).content.decode()
    assert "start the synchronizer first" in page
    button = page.split('data-action="sync-now-all"', 1)[1].split(">", 1)[0]
    assert "disabled" in button and "Start the synchronizer first." in button
    from synccore.models import SyncRun

    assert not SyncRun.objects.filter(environment=crm.env).exists()
