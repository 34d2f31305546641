"""API: items needing attention (retry), users by health, removing synchronized items, the audit log."""

from __future__ import annotations

import pytest

from syncadmin.models import AuditEntry
from synccore.models import ItemLink, LoopHold, SyncUser
from synccore.runtime import service as runtime
from tests.fixtures import factories
from tests.fixtures.api import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_item(env):
    alice = SyncUser.objects.get(mailbox_email="alice@contoso.example")
    contact = factories.contact(env, external_id="P-BAD")
    return ItemLink.objects.create(
        environment=env,
        sync_user=alice,
        kind="contact",
        contact=contact,
        state="skipped",
        last_error="Bad e-mail",
    )


def url(env, tail=""):
    return f"/api/v1/environments/{env.pk}/{tail}"


def test_lists_items_that_failed_were_skipped_or_are_held(viewer_api, env, failed_item):
    ItemLink.objects.create(
        environment=env,
        sync_user=failed_item.sync_user,
        kind="contact",
        contact=factories.contact(env),
        state="synced",
    )
    body = viewer_api.get(url(env, "attention/")).json()
    assert body["count"] == 1
    item = body["results"][0]
    assert (item["external_id"], item["state"], item["last_error"], item["user"]) == (
        "P-BAD",
        "skipped",
        "Bad e-mail",
        "alice@contoso.example",
    )
    assert viewer_api.get(url(env, "attention/?state=held")).json()["count"] == 0
    assert viewer_api.get(url(env, "attention/?state=synced")).status_code == 400


def test_retrying_an_item_queues_a_pass_and_is_audited(admin_api, env, failed_item, monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "sync_now", lambda env_id, **kw: calls.append((env_id, kw)) or {})
    env.set_state("running")  # while stopped the item waits for the first pass after a start
    response = admin_api.post(url(env, f"attention/{failed_item.pk}/retry/"))
    assert response.status_code == 202
    assert calls == [(env.pk, {"user_email": "alice@contoso.example", "kind": "contacts"})]
    assert AuditEntry.objects.get().action == "items_retried"


def test_filters_users_by_health(viewer_api, env):
    SyncUser.objects.filter(mailbox_email="bob@contoso.example").update(health="unhealthy")
    body = viewer_api.get(url(env, "users/?health=unhealthy")).json()
    assert [u["mailbox_email"] for u in body] == ["bob@contoso.example"]
    assert viewer_api.get(url(env, "users/?health=sad")).status_code == 400


def test_removing_synchronized_items_needs_a_deactivated_user(admin_api, env, monkeypatch):
    alice = SyncUser.objects.get(mailbox_email="alice@contoso.example")
    response = admin_api.post(url(env, f"users/{alice.pk}/remove-synchronized-items/"))
    assert response.status_code == 409
    import synccore.sync.contacts as contacts

    monkeypatch.setattr(contacts, "remove_synchronized_items", lambda user_id, confirm: 3 if confirm else 0)
    SyncUser.objects.filter(pk=alice.pk).update(active=False)
    response = admin_api.post(url(env, f"users/{alice.pk}/remove-synchronized-items/"))
    assert response.json() == {"removed": 3}


def test_an_exchange_failure_answers_502(admin_api, env, monkeypatch):
    import synccore.sync.contacts as contacts
    from synccore.mailbox.base import AuthenticationFailed

    def refuse(user_id, confirm):
        raise AuthenticationFailed("The service account's password was refused.")

    monkeypatch.setattr(contacts, "remove_synchronized_items", refuse)
    alice = SyncUser.objects.get(mailbox_email="alice@contoso.example")
    SyncUser.objects.filter(pk=alice.pk).update(active=False)
    response = admin_api.post(url(env, f"users/{alice.pk}/remove-synchronized-items/"))
    assert response.status_code == 502
    assert "password was refused" in response.json()["detail"]


def test_the_audit_log_reads_back_who_did_what(viewer_api, operator_api, env):
    operator_api.post(url(env, "sync-now/"), {"kind": "contacts"}, format="json")
    body = viewer_api.get("/api/v1/audit/", {"environment": env.pk, "action": "sync_now"}).json()
    assert body["count"] == 1
    assert body["results"][0]["changes"] == {"user": None, "kind": "contacts", "full": False}
    assert body["results"][0]["environment"] == "Production"
    assert viewer_api.get("/api/v1/audit/", {"environment": "x"}).status_code == 400


def test_an_audit_filter_by_an_environment_id_that_is_not_ascii_digits_or_too_large_is_a_400(viewer_api, env):
    # "²".isdigit() is true, and 30 digits overflow the database's integer: both were 500s.
    for value in ("²", "1" * 30):
        assert viewer_api.get("/api/v1/audit/", {"environment": value}).status_code == 400


def test_a_sync_user_id_too_large_for_the_database_is_a_404(viewer_api, env):
    assert viewer_api.get(url(env, "users/" + "9" * 30 + "/")).status_code == 404


def test_p3_items_the_loop_detector_holds_are_listed_with_their_kind_and_reason(viewer_api, env, failed_item):
    contact = factories.contact(env, external_id="P-LOOP", first_name="Ann", last_name="Loop")
    hold = LoopHold.objects.create(
        environment=env,
        sync_user=failed_item.sync_user,
        pass_kind="contacts",
        entity="contact",
        record_id=contact.pk,
        external_id="P-LOOP",
        subject="Ann Loop",
        fields={"job_title": ["Buyer", "CFO"]},
        history=[{"run": 1, "fields": {"job_title": ["Buyer", "CFO"]}}],
    )
    LoopHold.objects.create(  # released: no longer listed
        environment=env, sync_user=failed_item.sync_user, pass_kind="contacts", entity="contact",
        record_id=contact.pk, external_id="P-LOOP", released_at=hold.held_at,
    )  # fmt: skip
    body = viewer_api.get(url(env, "attention/")).json()
    assert body["count"] == 2
    by_state = {item["state"]: item for item in body["results"]}
    link = by_state["skipped"]  # the existing entries keep their shape
    assert (link["external_id"], link["message"], link["loop"]) == ("P-BAD", None, None)
    held = by_state["loop"]
    assert (held["id"], held["kind"], held["item"], held["external_id"], held["user"]) == (
        hold.pk,
        "contact",
        "Ann Loop",
        "P-LOOP",
        "alice@contoso.example",
    )
    assert held["last_error"].startswith("Held by the loop detector: job_title went back and forth")
    assert held["loop"]["pass_kind"] == "contacts"
    assert held["loop"]["fields"] == {"job_title": ["Buyer", "CFO"]}
    assert held["loop"]["release"] == f"/api/v1/environments/{env.pk}/items/contacts/P-LOOP/release/"
    only = viewer_api.get(url(env, "attention/?state=loop")).json()
    assert [item["id"] for item in only["results"]] == [hold.pk]
    assert [i["state"] for i in viewer_api.get(url(env, "attention/?state=skipped")).json()["results"]] == ["skipped"]
