"""Push over Microsoft Graph (K14): change-notification subscriptions held for the calendar users
of a running Graph environment with push on, the webhook at /hooks/graph/ the simulator calls
(the product is served on a loopback port, PUBLIC_BASE_URL points at it), renewal before expiry,
lifecycle notifications, removal on stop."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from synccore.mailbox import base
from synccore.models import (
    Activity,
    GraphSubscription,
    PushSubscriptionState,
    SynchronizerState,
    SyncRun,
    UserLease,
)
from synccore.runtime import leases, passes
from synccore.runtime import service as runtime
from synccore.runtime.push import graph as graph_push
from synccore.sync.connection import open_backend

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.backends("graph")]

ALICE = "alice@contoso.example"


# --- Helpers -------------------------------------------------------------------------------------


def queued(func: str = "synccore.tasks.run_pass") -> list[tuple]:
    found = []
    for row in OrmQ.objects.order_by("id"):
        task = SignedPackage.loads(row.payload)
        if task["func"] == func:
            found.append(tuple(task["args"]))
    return found


def push_passes() -> set[tuple]:
    return {args[:3] for args in queued() if args[2] == "push"}


def run_queued(*, passes: bool = True) -> None:
    """Do what a worker does with what is queued (the cluster test proves workers do)."""
    from synccore import tasks

    for row in OrmQ.objects.order_by("id"):
        task = SignedPackage.loads(row.payload)
        name = task["func"].rsplit(".", 1)[-1]
        if task["func"].startswith("synccore.tasks.") and (passes or name != "run_pass"):
            getattr(tasks, name)(*task["args"], **task.get("kwargs", {}))
        row.delete()


def held(crm) -> dict[str, object]:
    """mailbox → the simulator's subscription."""
    return {sub.mailbox: sub for sub in crm.sim.graph.subscriptions.all()}


def notify(entries, path="/hooks/graph/"):
    # As Graph calls it: no session, no CSRF token.
    return Client(enforce_csrf_checks=True).post(path, {"value": entries}, content_type="application/json")


@pytest.fixture
def hooked(crm, live_server, settings):
    """The product served on a loopback port, its public base URL pointing there, push on."""
    settings.PUBLIC_BASE_URL = live_server.url
    crm.configure(push_enabled=True, pull_interval=1, pull_interval_unit="days")
    crm.sim.graph.subscriptions.retry_delays = [0.1]
    return crm


@pytest.fixture
def subscribed(hooked):
    """Running, with a subscription for each calendar user, and nothing queued."""
    crm = hooked
    crm.env.set_state(SynchronizerState.RUNNING)
    assert graph_push.maintain(crm.env.pk)["created"] == 2
    OrmQ.objects.all().delete()
    return crm


# --- The backend's subscription calls ----------------------------------------------------------


def test_the_graph_backend_creates_renews_and_deletes_a_subscription(crm, webhook_receiver):
    sim = crm.sim
    backend = open_backend(crm.settings)
    expiry = sim.clock.now() + timedelta(days=2)
    made = backend.create_subscription(
        ALICE,
        backend.events_resource(ALICE),
        notification_url=webhook_receiver.url,
        lifecycle_url=webhook_receiver.lifecycle_url,
        client_state="secret-state",
        expires_at=expiry,
    )
    assert len(webhook_receiver.validations) == 2  # the notification and the lifecycle URL
    (sub,) = sim.graph.subscriptions.all()
    assert (sub.id, sub.client_state, sub.mailbox) == (made.id, "secret-state", ALICE)
    assert abs(made.expires_at - expiry) < timedelta(seconds=1)

    renewed = backend.renew_subscription(ALICE, made.id, expiry + timedelta(days=1))
    assert renewed.expires_at > made.expires_at
    backend.reauthorize_subscription(ALICE, made.id)
    backend.delete_subscription(ALICE, made.id)
    assert sim.graph.subscriptions.all() == []
    backend.delete_subscription(ALICE, made.id)  # gone already: fine
    with pytest.raises(base.ItemNotFound):
        backend.renew_subscription(ALICE, made.id, expiry)


def test_a_subscription_whose_webhook_fails_the_handshake_is_refused(crm, webhook_receiver):
    webhook_receiver.validation = "wrong"
    backend = open_backend(crm.settings)
    with pytest.raises(base.MailboxError, match="validation"):
        backend.create_subscription(
            ALICE,
            backend.events_resource(ALICE),
            notification_url=webhook_receiver.url,
            lifecycle_url=webhook_receiver.lifecycle_url,
            client_state="s",
            expires_at=timezone.now() + timedelta(days=1),
        )


# --- The webhook -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/hooks/graph/", "/hooks/graph/lifecycle/"])
def test_the_webhook_answers_the_validation_handshake_with_the_token_as_plain_text(crm, path):
    token = "Validation: Testing client application reachability <b>1</b>"
    answer = Client(enforce_csrf_checks=True).post(
        f"{path}?validationToken={token}", content_type="text/plain"
    )
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain")
    assert answer.content.decode() == token
    assert "Set-Cookie" not in answer.headers


def test_the_webhook_takes_only_posts_of_notifications(crm):
    client = Client()
    assert client.get("/hooks/graph/").status_code == 405
    assert client.post("/hooks/graph/", "not json", content_type="application/json").status_code == 400
    assert client.post("/hooks/graph/", {"value": "x"}, content_type="application/json").status_code == 400


def test_start_with_push_on_creates_a_subscription_for_each_calendar_user(hooked, live_server):
    crm = hooked
    crm.bob.calendar_enabled = False
    crm.bob.save()
    runtime.start(crm.env.pk)
    assert Schedule.objects.filter(
        name=graph_push.maintenance_schedule_name(crm.env), func="synccore.tasks.maintain_graph_subscriptions"
    ).exists()
    assert queued("synccore.tasks.maintain_graph_subscriptions") == [(crm.env.pk,)]
    assert crm.sim.graph.subscriptions.all() == []  # not in the request: on a worker
    run_queued(passes=False)

    sub = held(crm)[ALICE]
    assert set(held(crm)) == {ALICE}  # Bob's calendar is not synchronized
    assert sub.notification_url == f"{live_server.url}/hooks/graph/"
    assert sub.lifecycle_url == f"{live_server.url}/hooks/graph/lifecycle/"
    assert sub.change_types == {"created", "updated", "deleted"}
    row = GraphSubscription.objects.get(sync_user=crm.alice)
    assert (row.subscription_id, row.state, row.kind) == (sub.id, PushSubscriptionState.ACTIVE, "calendar")
    assert row.notification_url == sub.notification_url
    assert abs(row.expires_at - sub.expiration) < timedelta(seconds=1)
    # The clientState is random per subscription and not stored as it is.
    assert len(sub.client_state) >= 32 and sub.client_state not in row.client_state_hash
    # A change made before the subscription existed is caught up by a pass.
    assert (crm.alice.pk, "calendar", "push") in push_passes()
    status = runtime.status(crm.env.pk)
    alice = next(u for u in status["users"] if u["email"] == ALICE)
    assert alice["calendar"]["push"]["state"] == "active"
    assert alice["contacts"]["push"] is None  # contacts flow one way: pull only


def test_an_outlook_change_is_notified_and_enqueues_a_targeted_calendar_pass(subscribed):
    crm = subscribed
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    crm.mailbox().create_event("Pushed lunch", start, start + timedelta(hours=1))
    assert crm.sim.graph.subscriptions.wait_idle()
    assert held(crm)[ALICE].notified >= 1  # the webhook answered 2xx
    assert push_passes() == {(crm.alice.pk, "calendar", "push")}
    run_queued()
    assert Activity.objects.filter(subject="Pushed lunch", created_by_erp=False).exists()


def test_a_forged_or_unknown_client_state_is_ignored_and_logged(subscribed, caplog):
    crm = subscribed
    sub = held(crm)[ALICE]
    entry = {"subscriptionId": sub.id, "changeType": "updated", "resource": "Users/x/Events/y"}
    with caplog.at_level(logging.WARNING, logger="synccore.runtime.push.graph"):
        for forged in (
            {**entry, "clientState": "guess"},
            {**entry, "subscriptionId": "nope", "clientState": sub.client_state},
            entry,
        ):
            assert notify([forged]).status_code == 202  # answered like any other: tells nothing
    assert push_passes() == set()
    assert len([r for r in caplog.records if "ignored" in r.getMessage()]) == 3
    assert sub.client_state not in caplog.text

    assert notify([{**entry, "clientState": sub.client_state}]).status_code == 202
    assert push_passes() == {(crm.alice.pk, "calendar", "push")}


def test_a_push_pass_that_finds_the_mailbox_leased_marks_it_for_an_immediate_rerun(subscribed):
    crm = subscribed
    assert leases.acquire(crm.alice.pk, "another-worker")
    sub = held(crm)[ALICE]
    notify([{"subscriptionId": sub.id, "clientState": sub.client_state, "changeType": "created"}])
    (args,) = queued()
    assert passes.run_pass(*args).startswith("deferred")
    assert UserLease.objects.get(sync_user=crm.alice).rerun_calendar == "push"


def test_a_failed_creation_leaves_the_user_on_pull_only_with_the_reason_in_the_status(hooked, settings):
    crm = hooked
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9/"  # nobody answers the handshake there
    crm.env.set_state(SynchronizerState.RUNNING)
    assert graph_push.maintain(crm.env.pk)["failed"] == 2
    assert crm.sim.graph.subscriptions.all() == []
    alice = runtime.status(crm.env.pk)["users"][0]
    assert alice["calendar"]["push"]["state"] == "failed"
    assert (
        "pull only" in alice["calendar"]["push"]["error"]
        and "validation" in alice["calendar"]["push"]["error"]
    )
    assert alice["health"] == "healthy" and alice["calendar"]["next_due"]  # pull goes on

    settings.PUBLIC_BASE_URL = "http://sync.example.com"  # Graph calls https URLs only
    graph_push.maintain(crm.env.pk)
    assert "https" in GraphSubscription.objects.get(sync_user=crm.alice).error


def test_the_console_shows_a_mailbox_left_on_pull_only_and_why(hooked, settings):
    from tests.fixtures.api import user_with_role

    crm = hooked
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9/"
    crm.env.set_state(SynchronizerState.RUNNING)
    graph_push.maintain(crm.env.pk)
    client = Client()
    client.force_login(user_with_role("viewer"))
    page = client.get(f"/environments/{crm.env.pk}/").content.decode()
    assert "push: Failed (pull only)" in page  # the console's words for the state (syncadmin/console/labels.py)
    assert "No push for this mailbox (it is synchronized by pull only)" in page


def test_a_failed_creation_is_tried_again_at_the_next_maintenance(hooked, settings, live_server):
    crm = hooked
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9/"
    crm.env.set_state(SynchronizerState.RUNNING)
    graph_push.maintain(crm.env.pk)
    settings.PUBLIC_BASE_URL = live_server.url
    assert graph_push.maintain(crm.env.pk)["created"] == 2
    assert set(held(crm)) == {ALICE, "bob@contoso.example"}
    assert set(GraphSubscription.objects.values_list("state", flat=True)) == {"active"}


# --- Renewal, expiry, lifecycle --------------------------------------------------------------------


def test_subscriptions_are_renewed_before_they_expire(subscribed, clock):
    crm = subscribed
    before = {sub.mailbox: sub.expiration for sub in crm.sim.graph.subscriptions.all()}
    updates = crm.sim.counters["graph.subscriptions.update"]
    assert graph_push.maintain(crm.env.pk) == {"created": 0, "renewed": 0, "removed": 0, "failed": 0}
    assert crm.sim.counters["graph.subscriptions.update"] == updates  # far from expiry: no request

    clock.advance(graph_push.LIFETIME - graph_push.RENEW_WITHIN + timedelta(minutes=5))
    assert graph_push.maintain(crm.env.pk)["renewed"] == 2
    # One PATCH each (and one more for the token that expired meanwhile: 401, then a fresh one).
    assert crm.sim.counters["graph.subscriptions.update"] - updates in (2, 3)
    for sub in crm.sim.graph.subscriptions.all():
        assert sub.expiration > before[sub.mailbox]
        assert GraphSubscription.objects.get(subscription_id=sub.id).expires_at == sub.expiration
    assert push_passes() == set()  # nothing was lost


def test_an_expired_subscription_is_replaced_and_its_mailbox_caught_up(subscribed, clock):
    crm = subscribed
    old = {sub.id for sub in crm.sim.graph.subscriptions.all()}
    clock.advance(graph_push.LIFETIME + timedelta(hours=1))  # nobody renewed them in time
    assert crm.sim.graph.subscriptions.all() == []
    assert graph_push.maintain(crm.env.pk)["created"] == 2
    assert not old & {sub.id for sub in crm.sim.graph.subscriptions.all()}
    assert {args[0] for args in push_passes()} == {crm.alice.pk, crm.bob.pk}


def test_a_missed_lifecycle_notification_enqueues_a_catch_up_pass(subscribed):
    crm = subscribed
    assert crm.sim.graph.subscriptions.lifecycle(held(crm)[ALICE].id, "missed")
    assert crm.sim.graph.subscriptions.wait_idle()
    assert push_passes() == {(crm.alice.pk, "calendar", "push")}


def test_notifications_that_could_not_be_delivered_end_in_a_catch_up_pass(subscribed):
    crm = subscribed
    sub = held(crm)[ALICE]
    sub.notification_url = "http://127.0.0.1:9/hooks/graph/"  # the webhook is unreachable for a while
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    crm.mailbox().create_event("While unreachable", start, start + timedelta(hours=1))
    assert crm.sim.graph.subscriptions.wait_idle()
    assert sub.missed == 1
    assert push_passes() == {(crm.alice.pk, "calendar", "push")}  # the "missed" lifecycle event
    run_queued()
    assert Activity.objects.filter(subject="While unreachable").exists()


def test_reauthorization_required_renews_the_subscription_on_a_worker(subscribed):
    crm = subscribed
    sub = held(crm)[ALICE]
    expiry = sub.expiration
    assert crm.sim.graph.subscriptions.lifecycle(sub.id, "reauthorizationRequired")
    assert crm.sim.graph.subscriptions.wait_idle()
    assert sub.reauthorization_required  # the request only enqueued the work
    row = GraphSubscription.objects.get(subscription_id=sub.id)
    assert queued("synccore.tasks.renew_graph_subscription") == [(row.pk,)]
    run_queued()
    assert not sub.reauthorization_required and sub.expiration >= expiry


def test_a_removed_subscription_is_replaced_and_its_mailbox_caught_up(subscribed):
    crm = subscribed
    sub = held(crm)[ALICE]
    assert crm.sim.graph.subscriptions.lifecycle(sub.id, "subscriptionRemoved")
    assert crm.sim.graph.subscriptions.wait_idle()
    run_queued(passes=False)
    new = held(crm)[ALICE]
    assert new.id != sub.id
    assert GraphSubscription.objects.get(sync_user=crm.alice).subscription_id == new.id
    assert (crm.alice.pk, "calendar", "push") in push_passes()


# --- PUBLIC_BASE_URL changed --------------------------------------------------------------------


def base_of(webhook_receiver) -> str:
    return webhook_receiver.url.removesuffix("/hooks/graph/")


def test_a_changed_public_base_url_moves_the_subscriptions_to_the_new_address(
    subscribed, settings, webhook_receiver
):
    crm = subscribed
    old = {sub.id for sub in crm.sim.graph.subscriptions.all()}
    settings.PUBLIC_BASE_URL = base_of(webhook_receiver)
    assert graph_push.maintain(crm.env.pk) == {"created": 2, "renewed": 0, "removed": 0, "failed": 0}

    subs = crm.sim.graph.subscriptions.all()
    assert len(subs) == 2 and not old & {sub.id for sub in subs}  # the old ones are gone from Graph
    for sub in subs:
        assert (sub.notification_url, sub.lifecycle_url) == (webhook_receiver.url, webhook_receiver.lifecycle_url)
        assert GraphSubscription.objects.get(subscription_id=sub.id).notification_url == webhook_receiver.url
    # Notifications between the old subscription and the new one were lost: both mailboxes catch up.
    assert {args[0] for args in push_passes()} == {crm.alice.pk, crm.bob.pk}

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    crm.mailbox().create_event("After the move", start, start + timedelta(hours=1))
    (notification,) = webhook_receiver.wait_for(1, timeout=60)
    assert notification["subscriptionId"] == held(crm)[ALICE].id

    assert graph_push.maintain(crm.env.pk)["created"] == 0  # moved once, then left alone


def test_a_subscription_made_before_its_address_was_stored_is_made_anew_once(subscribed):
    crm = subscribed
    old = {sub.id for sub in crm.sim.graph.subscriptions.all()}
    GraphSubscription.objects.update(notification_url="")  # as the migration leaves existing rows
    assert graph_push.maintain(crm.env.pk)["created"] == 2
    assert not old & {sub.id for sub in crm.sim.graph.subscriptions.all()}
    assert graph_push.maintain(crm.env.pk) == {"created": 0, "renewed": 0, "removed": 0, "failed": 0}


def test_an_unusable_public_base_url_leaves_the_subscriptions_held_as_they_are(subscribed, settings):
    crm = subscribed
    before = {sub.id for sub in crm.sim.graph.subscriptions.all()}
    settings.PUBLIC_BASE_URL = ""
    assert graph_push.maintain(crm.env.pk) == {"created": 0, "renewed": 0, "removed": 0, "failed": 0}
    assert {sub.id for sub in crm.sim.graph.subscriptions.all()} == before


# --- Stop, push off ----------------------------------------------------------------------------


def test_stop_removes_the_subscriptions(hooked):
    crm = hooked
    runtime.start(crm.env.pk)
    run_queued(passes=False)
    assert len(held(crm)) == 2
    runtime.stop(crm.env.pk)
    assert not Schedule.objects.filter(name=graph_push.maintenance_schedule_name(crm.env)).exists()
    run_queued(passes=False)
    assert held(crm) == {}
    assert not GraphSubscription.objects.exists()
    # A notification still in flight for a removed subscription is ignored.
    assert notify([{"subscriptionId": "gone", "clientState": "x"}]).status_code == 202
    assert push_passes() == set()


def test_push_turned_off_or_a_user_deactivated_removes_their_subscriptions(subscribed):
    crm = subscribed
    crm.bob.active = False
    crm.bob.save()
    assert graph_push.maintain(crm.env.pk)["removed"] == 1
    assert set(held(crm)) == {ALICE}
    crm.configure(push_enabled=False)
    graph_push.maintain(crm.env.pk)
    assert held(crm) == {} and not GraphSubscription.objects.exists()


# --- The administrator's changes take effect at once ------------------------------------------------

BOB = "bob@contoso.example"
CAROL = "carol@contoso.example"


def maintenance_runs() -> list[tuple]:
    return queued("synccore.tasks.maintain_graph_subscriptions")


def api():
    from tests.fixtures.api import client_for, user_with_role

    return client_for(user_with_role("administrator"))


def console():
    from tests.fixtures.api import user_with_role

    client = Client()
    client.force_login(user_with_role("administrator"))
    return client


def settings_url(crm) -> str:
    return f"/api/v1/environments/{crm.env.pk}/settings/"


def users_url(crm, user=None) -> str:
    return f"/api/v1/environments/{crm.env.pk}/users/" + (f"{user.pk}/" if user else "")


def test_push_turned_on_while_running_subscribes_at_once(hooked):
    crm = hooked
    crm.configure(push_enabled=False)
    crm.env.set_state(SynchronizerState.RUNNING)
    answer = api().patch(settings_url(crm), {"push_enabled": True}, format="json")
    assert answer.status_code == 200, answer.content
    assert maintenance_runs() == [(crm.env.pk,)]  # enqueued: Graph is called on a worker
    assert crm.sim.graph.subscriptions.all() == []
    run_queued(passes=False)
    assert set(held(crm)) == {ALICE, BOB}


def test_push_turned_off_in_the_console_while_running_removes_the_subscriptions_at_once(subscribed):
    from tests.fixtures.api import console_settings_data

    crm = subscribed
    data = console_settings_data(crm.env)
    del data["push_enabled"]  # an unticked box is not posted
    assert console().post(f"/environments/{crm.env.pk}/settings/", data).status_code == 302
    assert maintenance_runs() == [(crm.env.pk,)]
    run_queued(passes=False)
    assert held(crm) == {} and not GraphSubscription.objects.exists()


def test_a_sync_user_added_while_running_is_subscribed_at_once(subscribed):
    from tests.fixtures import factories

    crm = subscribed
    factories.employee(crm.env, CAROL)
    answer = api().post(users_url(crm), {"mailbox_email": CAROL}, format="json")
    assert answer.status_code == 201, answer.content
    assert maintenance_runs() == [(crm.env.pk,)]
    run_queued(passes=False)
    assert set(held(crm)) == {ALICE, BOB, CAROL}
    assert {args[0] for args in push_passes()} == {answer.json()["id"]}  # its catch-up pass


def test_a_sync_user_deactivated_or_activated_in_the_console_follows_at_once(subscribed):
    crm = subscribed
    client = console()
    client.post(f"/environments/{crm.env.pk}/users/{crm.bob.pk}/deactivate/")
    assert maintenance_runs() == [(crm.env.pk,)]
    run_queued(passes=False)
    assert set(held(crm)) == {ALICE}

    client.post(f"/environments/{crm.env.pk}/users/{crm.bob.pk}/activate/")
    assert maintenance_runs() == [(crm.env.pk,)]
    run_queued(passes=False)
    assert set(held(crm)) == {ALICE, BOB}


def test_a_changed_mailbox_address_moves_the_subscription_to_the_new_mailbox(subscribed):
    from tests.fixtures import factories

    crm = subscribed
    old = held(crm)[BOB]
    carol = factories.employee(crm.env, CAROL)
    answer = console().post(
        f"/environments/{crm.env.pk}/users/{crm.bob.pk}/edit/",
        {"employee": carol.pk, "mailbox_email": CAROL, "calendar_enabled": "on", "active": "on"},
    )
    assert answer.status_code == 302
    assert maintenance_runs() == [(crm.env.pk,)]
    run_queued(passes=False)
    assert set(held(crm)) == {ALICE, CAROL}
    assert held(crm)[CAROL].id != old.id
    assert GraphSubscription.objects.get(sync_user=crm.bob).subscription_id == held(crm)[CAROL].id


def test_a_deleted_sync_user_has_its_subscription_deleted_from_graph(subscribed):
    crm = subscribed
    sub_id = held(crm)[BOB].id
    assert api().delete(users_url(crm, crm.bob)).status_code == 204
    assert queued("synccore.tasks.delete_graph_subscription") == [(crm.env.pk, BOB, sub_id)]
    run_queued(passes=False)
    assert set(held(crm)) == {ALICE}


def test_a_sync_user_deleted_in_the_back_office_has_its_subscription_deleted_from_graph(subscribed):
    from tests.fixtures.api import user_with_role

    crm = subscribed
    client = Client()
    client.force_login(user_with_role(None, superuser=True))
    answer = client.post(f"/admin/synccore/syncuser/{crm.bob.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302
    run_queued(passes=False)
    assert set(held(crm)) == {ALICE}


def test_the_backend_switched_to_ews_while_running_drops_the_graph_subscriptions(subscribed):
    from tests.fixtures.crm import connection_fields

    crm = subscribed
    answer = api().patch(settings_url(crm), connection_fields(crm.sim, "ews"), format="json")
    assert answer.status_code == 200, answer.content
    assert maintenance_runs() == [(crm.env.pk,)]
    run_queued(passes=False)
    assert not GraphSubscription.objects.exists()


def test_changes_that_do_not_touch_push_enqueue_no_maintenance(subscribed):
    crm = subscribed
    assert api().patch(settings_url(crm), {"pull_interval": 2}, format="json").status_code == 200
    assert api().patch(users_url(crm, crm.bob), {"contacts_enabled": False}, format="json").status_code == 200
    assert maintenance_runs() == []


def test_a_failed_subscription_is_tried_again_when_the_settings_are_saved(hooked, settings, live_server):
    crm = hooked
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9/"
    crm.env.set_state(SynchronizerState.RUNNING)
    graph_push.maintain(crm.env.pk)
    OrmQ.objects.all().delete()
    settings.PUBLIC_BASE_URL = live_server.url
    assert api().patch(settings_url(crm), {"pull_interval": 2}, format="json").status_code == 200
    assert maintenance_runs() == [(crm.env.pk,)]
    run_queued(passes=False)
    assert set(held(crm)) == {ALICE, BOB}


def test_saving_the_settings_after_a_public_base_url_change_moves_the_subscriptions_at_once(
    subscribed, settings, webhook_receiver
):
    crm = subscribed
    settings.PUBLIC_BASE_URL = base_of(webhook_receiver)  # the web server and workers restarted
    assert api().patch(settings_url(crm), {"pull_interval": 2}, format="json").status_code == 200
    assert maintenance_runs() == [(crm.env.pk,)]
    run_queued(passes=False)
    assert {sub.notification_url for sub in crm.sim.graph.subscriptions.all()} == {webhook_receiver.url}


def test_a_stopped_environment_enqueues_no_maintenance(hooked):
    from tests.fixtures import factories

    crm = hooked
    crm.configure(push_enabled=False)
    assert api().patch(settings_url(crm), {"push_enabled": True}, format="json").status_code == 200
    factories.employee(crm.env, CAROL)
    assert api().post(users_url(crm), {"mailbox_email": CAROL}, format="json").status_code == 201
    assert maintenance_runs() == []


def test_an_ews_environment_enqueues_no_graph_maintenance(crm_ews):
    crm = crm_ews
    crm.env.set_state(SynchronizerState.RUNNING)
    assert api().patch(settings_url(crm), {"push_enabled": True}, format="json").status_code == 200
    assert maintenance_runs() == []


# --- With a real qcluster ------------------------------------------------------------------------


def settled(crm) -> bool:
    """No pass running and none asked for: what follows can only come from a notification."""
    return (
        not SyncRun.objects.filter(environment=crm.env, outcome="running").exists()
        and not UserLease.objects.exclude(rerun_calendar="", rerun_contacts="").exists()
        and not queued()
    )


@pytest.mark.slow
def test_k14_an_outlook_change_reaches_the_crm_through_a_real_cluster_without_waiting_for_the_pull_interval(
    hooked, live_server, tmp_path
):
    from django_q.conf import Conf

    from tests.runtime_cluster import Cluster, last_json, manage, runtime_env, wait_for

    crm = hooked
    # The simulator's Graph deadlines are Graph's own (10 s for the handshake, 3 s for a
    # notification, then quick retries): a machine busy with other test runs can miss them, and a
    # subscription whose handshake timed out is only tried again at the hourly maintenance. Here
    # they are generous: this test is about the way a change travels, not about Graph's deadlines
    # (tests/exchange_sim/test_graph_subscriptions.py holds those).
    subscriptions = crm.sim.graph.subscriptions
    subscriptions.validation_timeout = 25.0  # two handshakes fit in one create request (60 s)
    subscriptions.delivery_timeout = 30.0
    subscriptions.retry_delays = [1.0, 2.0, 4.0]
    # The webhook (served here) enqueues on this process's queue: the cluster must read that one.
    # SYNC_TEST_SECONDS_PER_UNIT=0: the pull interval is the day configured, not one test second —
    # else ticks bring the change over every second, and on a loaded machine a scheduled pass
    # could win the race against the notification's pass.
    renv = runtime_env(name=Conf.PREFIX, PUBLIC_BASE_URL=live_server.url, SYNC_TEST_SECONDS_PER_UNIT=0)
    cluster = Cluster(renv, tmp_path / "qcluster.log")
    try:
        started = manage("synchronizer", "start", "--environment", crm.env.name, env=renv)
        assert started.returncode == 0, started.stderr
        assert last_json(started.stdout)["state"] == "running"
        # A worker subscribes both calendars; the first passes and the catch-ups run and end.
        wait_for(lambda: len(held(crm)) == 2, what="subscriptions", timeout=90)
        wait_for(
            lambda: (
                SyncRun.objects.filter(sync_user=crm.alice, kind="calendar", trigger="push")
                .exclude(outcome="running")
                .exists()
            ),
            what="the catch-up pass after subscribing",
            timeout=90,
        )

        wait_for(lambda: settled(crm), what="no pass running or asked for", timeout=90)
        before = SyncRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0

        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        crm.mailbox().create_event("Pushed through Graph", start, start + timedelta(hours=1))
        # The pull interval is a day (ticks still run every second and find nothing due): only
        # the notification can bring it over.
        wait_for(
            lambda: Activity.objects.filter(subject="Pushed through Graph", created_by_erp=False).exists(),
            what="the Outlook change in the CRM",
            timeout=90,
        )
        brought = SyncRun.objects.filter(sync_user=crm.alice, kind="calendar", pk__gt=before)
        assert "push" in {run.trigger for run in brought}

        stopped = manage("synchronizer", "stop", "--environment", crm.env.name, env=renv)
        assert stopped.returncode == 0, stopped.stderr
        wait_for(lambda: held(crm) == {}, what="the subscriptions removed", timeout=90)
    except AssertionError:
        print(cluster.output())
        raise
    finally:
        cluster.stop()


def test_a_maintenance_run_overtaken_by_stop_leaves_no_subscription_behind(hooked, monkeypatch):
    crm = hooked
    crm.env.set_state(SynchronizerState.RUNNING)
    real_wanted = graph_push.wanted_users

    def wanted_then_stopped(env):
        users = real_wanted(env)
        runtime.stop(env.pk)  # the administrator stops while this run is under way
        return users

    monkeypatch.setattr(graph_push, "wanted_users", wanted_then_stopped)
    assert graph_push.maintain(crm.env.pk)["created"] == 0
    assert held(crm) == {} and not GraphSubscription.objects.exists()


def test_a_subscription_made_for_a_row_removed_meanwhile_is_deleted_again(hooked, monkeypatch):
    from synccore.mailbox.graph import GraphBackend

    crm = hooked
    crm.env.set_state(SynchronizerState.RUNNING)
    real_create = GraphBackend.create_subscription

    def create_while_stop_removes_the_row(self, *args, **kwargs):
        made = real_create(self, *args, **kwargs)
        GraphSubscription.objects.all().delete()  # another worker's removal got there first
        return made

    monkeypatch.setattr(GraphBackend, "create_subscription", create_while_stop_removes_the_row)
    assert graph_push.maintain(crm.env.pk)["created"] == 0
    assert held(crm) == {}


def test_the_deploy_check_warns_when_graph_cannot_reach_the_webhooks(settings):
    from synccore.checks import public_base_url

    settings.PUBLIC_BASE_URL = "https://sync.example.com"
    assert public_base_url(None) == []
    for unreachable in ("http://127.0.0.1:8000", "http://sync.example.com", ""):
        settings.PUBLIC_BASE_URL = unreachable
        (warning,) = public_base_url(None)
        assert warning.id == "synccore.W001"
