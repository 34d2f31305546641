"""Alerts (O6, issue 14): e-mail (Django's locmem backend here) and an outgoing webhook (a loopback
receiver) when a user turns unhealthy or recovers, the environment fails or degrades, push is lost,
the client secret is about to expire — one message per change of state, never one per pass."""

from __future__ import annotations

import ast
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from syncadmin.models import AuditEntry
from synccore import tasks
from synccore.models import AlertState, GraphSubscription, PushSubscriptionState, SynchronizerState, SyncUser
from synccore.runtime import alerts
from synccore.runtime import service as runtime
from tests.fixtures.api import *  # noqa: F403  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)

PINNED_KEYS = {"environment", "event", "user", "kind", "state", "reason", "at"}


def deliveries() -> list[tuple]:
    found = []
    for row in OrmQ.objects.order_by("id"):
        task = SignedPackage.loads(row.payload)
        if task["func"] == alerts.DELIVER:
            found.append(tuple(task["args"]))
    return found


def run_deliveries() -> None:
    """Do what a worker does with the queued deliveries."""
    for row in OrmQ.objects.order_by("id"):
        task = SignedPackage.loads(row.payload)
        if task["func"] == alerts.DELIVER:
            tasks.deliver_alerts(*task["args"])
            row.delete()


@pytest.fixture
def alerting(crm, webhook_receiver):
    crm.configure(alert_emails="ops@example.com,\nlead@example.com", alert_webhook_url=webhook_receiver.url)
    return crm, webhook_receiver


def break_mailbox(user: SyncUser, address: str = "nobody@contoso.example") -> None:
    # As if re-addressed to a mailbox Exchange does not have (no save signals: no mailbox test
    # queued); its contacts alone are synchronized, so one kind turns unhealthy.
    SyncUser.objects.filter(pk=user.pk).update(mailbox_email=address, calendar_enabled=False)


def contacts_pass(user: SyncUser) -> str:
    return tasks.run_pass(user.pk, "contacts", "manual")


def test_o6_one_change_of_state_sends_one_email_and_one_webhook_call_and_the_next_pass_in_it_none(
    alerting, mailoutbox
):
    crm, receiver = alerting
    break_mailbox(crm.alice)
    contacts_pass(crm.alice)
    run_deliveries()
    assert len(mailoutbox) == 1
    (mail,) = mailoutbox
    assert mail.to == ["ops@example.com", "lead@example.com"]
    assert "nobody@contoso.example (contacts) needs attention" in mail.subject
    assert "Check the sync user's mailbox address" in mail.body
    assert f"/environments/{crm.env.pk}/" in mail.body
    (post,) = receiver.posts
    assert set(post[1]) == PINNED_KEYS
    assert post[1] | {"at": ""} == {
        "environment": crm.env.name,
        "event": "user_unhealthy",
        "user": "nobody@contoso.example",
        "kind": "contacts",
        "state": "failing",
        "reason": post[1]["reason"],
        "at": "",
    }
    assert "has no mailbox nobody@contoso.example" in post[1]["reason"]

    contacts_pass(crm.alice)  # fails again, in the same way: nothing new to tell
    run_deliveries()
    assert len(mailoutbox) == 1 and len(receiver.posts) == 1

    # Fixed: one message that it recovered.
    SyncUser.objects.filter(pk=crm.alice.pk).update(mailbox_email="alice@contoso.example")
    runtime.reenable(crm.alice.pk)
    contacts_pass(crm.alice)
    run_deliveries()
    assert len(mailoutbox) == 2 and "is healthy again" in mailoutbox[1].subject
    assert [p[1]["event"] for p in receiver.posts] == ["user_unhealthy", "user_recovered"]
    contacts_pass(crm.alice)
    run_deliveries()
    assert len(mailoutbox) == 2 and len(receiver.posts) == 2


def test_o6_each_delivery_is_recorded_in_the_audit_log(alerting, mailoutbox):
    crm, _ = alerting
    break_mailbox(crm.alice)
    contacts_pass(crm.alice)
    run_deliveries()
    (entry,) = AuditEntry.objects.filter(action="alert_sent")
    assert (entry.username, entry.via, entry.outcome, entry.environment_id) == (
        "synchronizer",
        "worker",
        "",
        crm.env.pk,
    )
    assert entry.target == "user_unhealthy" and entry.changes["channels"] == "email, webhook"
    assert "nobody@contoso.example (contacts) needs attention" in entry.changes["events"]


def test_o6_a_running_environment_that_degrades_says_so_in_the_same_message(alerting, mailoutbox):
    crm, receiver = alerting
    crm.env.set_state(SynchronizerState.RUNNING)
    assert alerts.observe(crm.env.pk) == []  # first seen healthy: nothing to tell
    break_mailbox(crm.alice)
    contacts_pass(crm.alice)
    run_deliveries()
    assert len(mailoutbox) == 1 and "(and 1 more)" in mailoutbox[0].subject
    assert sorted(p[1]["event"] for p in receiver.posts) == ["environment_degraded", "user_unhealthy"]


def test_o6_a_failed_start_is_told(alerting, mailoutbox):
    crm, receiver = alerting
    crm.configure(service_password="wrong")
    with pytest.raises(runtime.StartFailed):
        runtime.start(crm.env.pk)
    run_deliveries()
    assert [p[1]["event"] for p in receiver.posts] == ["environment_failed"]
    assert receiver.posts[0][1]["state"] == "failed" and len(mailoutbox) == 1


def test_o6_lost_push_is_told_once_and_its_return_once(alerting, mailoutbox):
    crm, receiver = alerting
    crm.configure(push_enabled=True)
    crm.env.set_state(SynchronizerState.RUNNING)
    # Over EWS with no listener running the status says push is lost for each calendar user.
    alerts.observe(crm.env.pk)
    alerts.observe(crm.env.pk)
    run_deliveries()
    lost = sorted((p[1]["event"], p[1]["user"]) for p in receiver.posts)
    assert lost == [("push_lost", "alice@contoso.example"), ("push_lost", "bob@contoso.example")]
    assert len(mailoutbox) == 1  # one e-mail for one observation, whatever it lists


def test_o6_a_client_secret_about_to_expire_is_told_once(alerting, mailoutbox):
    crm, receiver = alerting
    crm.configure(
        oauth_client_secret="s3cret", oauth_client_secret_expires_on=timezone.localdate() + timedelta(days=10)
    )
    assert [e["event"] for e in alerts.observe(crm.env.pk)] == ["secret_expiring"]
    assert alerts.observe(crm.env.pk) == []
    crm.configure(oauth_client_secret_expires_on=timezone.localdate() - timedelta(days=1))
    assert [e["event"] for e in alerts.observe(crm.env.pk)] == ["secret_expired"]
    run_deliveries()
    assert "expired on" in receiver.posts[-1][1]["reason"] and len(mailoutbox) == 2


def test_o6_a_webhook_that_fails_is_tried_again_later_and_the_failure_audited(alerting, mailoutbox):
    crm, receiver = alerting
    receiver.status = 500
    break_mailbox(crm.alice)
    contacts_pass(crm.alice)
    run_deliveries()
    assert len(mailoutbox) == 1  # the e-mail went; only the webhook is tried again
    (retry,) = Schedule.objects.filter(func=alerts.DELIVER)
    assert retry.next_run > timezone.now()
    assert "webhook" in AuditEntry.objects.get(action="alert_sent").outcome
    receiver.status = 204
    environment_id, events, channels, attempt = ast.literal_eval(retry.args)
    assert channels == ["webhook"] and attempt == 1
    assert tasks.deliver_alerts(environment_id, events, channels, attempt) == {"webhook": ""}
    assert len(mailoutbox) == 1 and [p[1]["event"] for p in receiver.posts].count("user_unhealthy") == 2


def test_o6_without_addresses_or_webhook_states_are_followed_but_nothing_is_sent(crm, mailoutbox):
    break_mailbox(crm.alice)
    contacts_pass(crm.alice)
    assert deliveries() == []
    assert AlertState.objects.get(subject=f"user:{crm.alice.pk}:contacts").state == "failing"


def test_o6_alert_settings_in_the_api_refuse_a_bad_address(admin_api, env):
    url = f"/api/v1/environments/{env.pk}/settings/"
    response = admin_api.patch(url, {"alert_emails": "ops@example.com, not-an-address"}, format="json")
    assert response.status_code == 400 and "not-an-address" in str(response.json()["alert_emails"])
    response = admin_api.patch(
        url,
        {
            "alert_emails": "ops@example.com; lead@example.com",
            "alert_webhook_url": "https://hooks.example.com/crm-sync",
            "oauth_client_secret_expires_on": "2027-03-01",
        },
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["alert_webhook_url"] == "https://hooks.example.com/crm-sync"
    assert body["oauth_client_secret_expires_on"] == "2027-03-01"
    env.settings.refresh_from_db()
    assert env.settings.alert_addresses() == ["ops@example.com", "lead@example.com"]


def test_o6_the_console_settings_have_an_alerts_group(env):
    from tests.fixtures.api import user_with_role

    client = Client()
    client.force_login(user_with_role("administrator"))
    page = client.get(f"/environments/{env.pk}/").content.decode()
    assert "Alerts" in page and 'name="alert_emails"' in page and 'name="alert_webhook_url"' in page
    assert 'name="oauth_client_secret_expires_on"' in page


def test_o6_a_graph_push_failure_is_told(crm_graph, webhook_receiver, mailoutbox):
    crm = crm_graph
    crm.configure(alert_webhook_url=webhook_receiver.url, push_enabled=True)
    crm.env.set_state(SynchronizerState.RUNNING)
    GraphSubscription.objects.create(
        environment=crm.env,
        sync_user=crm.alice,
        kind="calendar",
        resource="users/alice@contoso.example/events",
        state=PushSubscriptionState.FAILED,
        error="No push for this mailbox (it is synchronized by pull only): refused.",
    )
    (event,) = alerts.observe(crm.env.pk)
    assert (event["event"], event["user"], event["kind"]) == ("push_lost", "alice@contoso.example", "calendar")
    assert mailoutbox == []  # no addresses: the webhook alone


def test_o2_an_expiring_client_secret_is_in_needs_attention_and_the_status(crm, client):
    from tests.fixtures.api import user_with_role

    expires = timezone.localdate() + timedelta(days=5)
    crm.configure(oauth_client_secret="s3cret", oauth_client_secret_expires_on=expires)
    secret = runtime.status(crm.env.pk)["secret"]
    assert (secret["state"], secret["expires_on"]) == ("expiring", expires.isoformat())
    client.force_login(user_with_role("viewer"))
    page = client.get(f"/environments/{crm.env.pk}/?tab=attention").content.decode()
    assert 'data-attention="secret"' in page and f"expires on {expires:%Y-%m-%d}" in page
    assert '<span class="count">1</span>' in page.split('data-tab="attention"', 1)[1].split("</a>", 1)[0]
    crm.configure(oauth_client_secret_expires_on=expires + timedelta(days=365))
    assert runtime.status(crm.env.pk)["secret"]["state"] == "valid"


def test_o6_a_test_alert_reaches_both_channels_and_needs_one(alerting, mailoutbox, admin_api):
    crm, receiver = alerting
    response = admin_api.post(f"/api/v1/environments/{crm.env.pk}/test-alert/")
    assert response.status_code == 202 and response.json() == {"channels": ["email", "webhook"]}
    run_deliveries()
    assert len(mailoutbox) == 1 and "sent a test alert" in mailoutbox[0].subject
    (post,) = receiver.posts
    assert set(post[1]) == PINNED_KEYS and post[1]["event"] == "test"
    crm.configure(alert_emails="", alert_webhook_url="")
    response = admin_api.post(f"/api/v1/environments/{crm.env.pk}/test-alert/")
    assert response.status_code == 409 and "Settings" in response.json()["detail"]


def test_o6_the_console_sends_a_test_alert(alerting, mailoutbox, client):
    from tests.fixtures.api import user_with_role

    crm, receiver = alerting
    client.force_login(user_with_role("operator"))
    page = client.post(f"/environments/{crm.env.pk}/test-alert/", follow=True).content.decode()
    assert "A test alert of Sync test is on its way" in page
    run_deliveries()
    assert len(mailoutbox) == 1 and len(receiver.posts) == 1


def test_o6_after_a_task_of_passes_only_its_users_are_read_whatever_the_size_of_the_environment(crm):
    """A tick of 2,000 mailboxes is 250 tasks: if each read every user's state, the tick would
    cost the square of the environment's size."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.fixtures import factories as f

    crm.env.set_state(SynchronizerState.RUNNING)
    alerts.observe(crm.env.pk)

    def queries_after_a_pass() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            alerts.observe(crm.env.pk, [crm.alice.pk])
        return [q["sql"] for q in captured]

    before = queries_after_a_pass()
    for n in range(30):
        f.sync_user(crm.env, f"extra{n}@contoso.example")
    alerts.observe(crm.env.pk)
    after = queries_after_a_pass()
    assert len(after) == len(before)
    # Rows of users and of their alert states are read for the task's users only (the others'
    # troubled states are counted, not loaded).
    reads = [sql for sql in after if sql.startswith("SELECT") and "COUNT(" not in sql.upper()]
    for table in ("synccore_syncuser", "synccore_alertstate"):
        read = [sql for sql in reads if f'FROM "{table}"' in sql]
        assert read and all(" IN (" in sql for sql in read), read


def test_o6_after_a_task_of_passes_the_environment_stays_degraded_by_a_user_outside_it(alerting, mailoutbox):
    crm, _ = alerting
    crm.env.set_state(SynchronizerState.RUNNING)
    assert alerts.observe(crm.env.pk) == []
    break_mailbox(crm.alice)
    runtime.run_pass_batch([crm.alice.pk, crm.bob.pk], "contacts", "manual", threads=1)
    assert sorted(e["event"] for e in alerts_told(crm)) == ["environment_degraded", "user_unhealthy"]
    # Bob's passes alone: Alice, unhealthy as last seen, keeps the environment degraded.
    runtime.run_pass_batch([crm.bob.pk], "contacts", "manual", threads=1)
    assert AlertState.objects.get(environment=crm.env, subject="environment").state == "degraded"
    # Alice mended: her task's observation sees the environment healthy again.
    SyncUser.objects.filter(pk=crm.alice.pk).update(mailbox_email="alice@contoso.example")
    runtime.run_pass_batch([crm.alice.pk], "contacts", "manual", threads=1)
    assert AlertState.objects.get(environment=crm.env, subject="environment").state == "healthy"
    assert "user_recovered" in [e["event"] for e in alerts_told(crm)]


def alerts_told(crm) -> list[dict]:
    return [event for args in deliveries() if args[0] == crm.env.pk for event in args[1]]
