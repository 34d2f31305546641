"""Push (K14): the listener's streaming subscriptions and CRM-side changes enqueue targeted
calendar passes, and those passes carry the change across within seconds."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.urls import reverse
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from synccore.models import Activity, SynchronizerState
from synccore.runtime import passes
from synccore.runtime import service as runtime
from synccore.runtime.push import ews as push
from tests.fixtures import factories as f
from tests.fixtures.admin_forms import change_form_data

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def calendar_only(user, kind) -> bool:
    # Calendar push alone here; tasks and e-mail push: tests/test_push_ews_tasks_email.py.
    return kind == "calendar"


def push_passes() -> list[tuple]:
    found = []
    for row in OrmQ.objects.order_by("id"):
        task = SignedPackage.loads(row.payload)
        if task["func"] == "synccore.tasks.run_pass" and task["args"][2] == "push":
            found.append(tuple(task["args"]))
    return found


def wait_for(predicate, timeout: float = 90):
    # Generous: 250 mailboxes subscribe in seconds alone, many times that on a machine loaded by
    # other test runs; only a fact that never comes true should end here.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture
def listener(crm, monkeypatch):
    monkeypatch.setattr(passes, "runnable_kind", calendar_only)
    crm.configure(push_enabled=True)
    crm.env.set_state(SynchronizerState.RUNNING)
    crm.sim.streaming.seconds_per_minute = 2  # a stream notices the listener's stop within 2 s
    stop = threading.Event()
    thread = threading.Thread(target=push.run_listener, args=(stop,), kwargs={"poll_s": 0.5}, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=30)
    wait_for(lambda: crm.sim.streaming.open_streams == 0)


def test_the_listener_catches_up_on_connect_and_enqueues_a_pass_for_the_mailbox_that_changed(crm, listener):
    # Catch-up after (re)connecting: streaming cannot replay the gap.
    wait_for(lambda: {args[0] for args in push_passes()} == {crm.alice.pk, crm.bob.pk})
    OrmQ.objects.all().delete()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    crm.mailbox().create_event("Lunch", start, start + timedelta(hours=1))
    wait_for(lambda: push_passes())
    assert {args[:3] for args in push_passes()} == {(crm.alice.pk, "calendar", "push")}


def test_the_listener_holds_streams_only_for_running_environments_with_push_on(crm, monkeypatch):
    monkeypatch.setattr(passes, "runnable_kind", calendar_only)
    crm.configure(push_enabled=True)
    assert push.wanted_streams() == {}  # stopped
    crm.env.set_state(SynchronizerState.RUNNING)
    streams = [user for users in push.wanted_streams().values() for user in users]
    assert streams == [
        (crm.alice.pk, "alice@contoso.example", ("calendar",)),
        (crm.bob.pk, "bob@contoso.example", ("calendar",)),
    ]
    crm.configure(push_enabled=False)
    assert push.wanted_streams() == {}


def run_queued_passes() -> None:
    """Do what a worker does with the queued passes (the cluster tests prove workers do)."""
    from synccore import tasks

    for row in OrmQ.objects.order_by("id"):
        task = SignedPackage.loads(row.payload)
        if task["func"] == "synccore.tasks.run_pass":
            tasks.run_pass(*task["args"], **task.get("kwargs", {}))
        row.delete()


def test_an_outlook_change_reaches_the_crm_without_waiting_for_the_pull_interval(crm, listener):
    crm.configure(pull_interval=1, pull_interval_unit="days")
    wait_for(lambda: {args[0] for args in push_passes()} == {crm.alice.pk, crm.bob.pk})  # catch-up
    run_queued_passes()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    crm.mailbox().create_event("Pushed lunch", start, start + timedelta(hours=1))
    wait_for(lambda: push_passes())
    run_queued_passes()
    assert Activity.objects.filter(subject="Pushed lunch", created_by_erp=False).exists()


def test_a_crm_change_reaches_exchange_without_waiting_for_the_pull_interval(crm, monkeypatch):
    monkeypatch.setattr(passes, "runnable_kind", calendar_only)
    crm.configure(push_enabled=True, pull_interval=1, pull_interval_unit="days")
    crm.env.set_state(SynchronizerState.RUNNING)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    with transaction.atomic():
        activity = f.activity(crm.env, subject="Pushed visit", start=start, organizer=crm.alice.employee)
        runtime.notify_crm_change(crm.env.pk, [activity.pk])
        assert not push_passes()  # nothing before the commit: a worker must see the change
    assert {args[:3] for args in push_passes()} == {(crm.alice.pk, "calendar", "push")}
    run_queued_passes()
    assert [e.props["Subject"] for e in crm.mailbox().events()] == ["Pushed visit"]


@pytest.mark.backends("ews", "graph")
def test_finding4_an_activity_edited_in_the_admin_enqueues_the_push_pass(crm, monkeypatch, admin_client):
    monkeypatch.setattr(passes, "runnable_kind", calendar_only)
    crm.configure(push_enabled=True, pull_interval=1, pull_interval_unit="days")
    crm.env.set_state(SynchronizerState.RUNNING)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    activity = f.activity(crm.env, subject="Back office visit", start=start, organizer=crm.alice.employee)
    url = reverse("admin:synccore_activity_change", args=[activity.pk])
    page = admin_client.get(url).content.decode()
    response = admin_client.post(url, change_form_data(page, subject="Back office visit, moved"))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert {args[:3] for args in push_passes()} == {(crm.alice.pk, "calendar", "push")}
    run_queued_passes()
    assert [e.props["Subject"] for e in crm.mailbox().events()] == ["Back office visit, moved"]

    admin_client.post(reverse("admin:synccore_activity_delete", args=[activity.pk]), {"post": "yes"})
    assert {args[:3] for args in push_passes()} == {(crm.alice.pk, "calendar", "push")}
    run_queued_passes()
    assert crm.mailbox().events() == []


# --- Shared streaming connections: groups of at most 200 subscriptions ---------------------------


@pytest.fixture
def big_org(exchange_sim_factory, monkeypatch):
    """250 calendar users with push on, in a running environment, on a simulator of their own."""
    monkeypatch.setattr(passes, "runnable_kind", calendar_only)
    emails = [f"user{i:03d}@contoso.example" for i in range(250)]
    sim = exchange_sim_factory(mailboxes=emails)
    sim.streaming.seconds_per_minute = 4  # a stream notices the listener's stop within 4 s
    env = f.environment(
        "Push at scale",
        ews_url=sim.url,
        auth_type="basic",
        service_account=sim.credentials[0],
        service_password=sim.credentials[1],
        synchronize_activities=True,
        push_enabled=True,
        pull_interval=1,
        pull_interval_unit="days",
    )
    users = {email: f.sync_user(env, email) for email in emails}
    env.set_state(SynchronizerState.RUNNING)
    stop = threading.Event()
    thread = threading.Thread(target=push.run_listener, args=(stop,), kwargs={"poll_s": 0.5}, daemon=True)
    thread.start()
    yield sim, users
    stop.set()
    thread.join(timeout=30)
    wait_for(lambda: sim.streaming.open_streams == 0)


def caught_up(users) -> bool:
    return {args[0] for args in push_passes()} == {user.pk for user in users.values()}


def test_250_push_users_share_two_streaming_connections_and_a_change_in_each_group_reaches_the_crm(big_org):
    sim, users = big_org
    wait_for(lambda: sim.streaming.open_stream_sizes() == [50, 200])
    assert len(sim.subscriptions.all()) == 250  # one per mailbox, read by two streams
    wait_for(lambda: caught_up(users))  # after connecting: a catch-up pass for every mailbox
    OrmQ.objects.all().delete()

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    first_group, second_group = "user007@contoso.example", "user231@contoso.example"
    for email in (first_group, second_group):
        sim.user(email).create_event(f"Pushed for {email}", start, start + timedelta(hours=1))
    wanted = {users[first_group].pk, users[second_group].pk}
    wait_for(lambda: {args[0] for args in push_passes()} == wanted)
    run_queued_passes()
    for email in (first_group, second_group):
        assert Activity.objects.filter(subject=f"Pushed for {email}").exists()


def test_a_dropped_streaming_connection_reconnects_and_catches_up(big_org):
    sim, users = big_org
    wait_for(lambda: sim.streaming.open_stream_sizes() == [50, 200])
    wait_for(lambda: caught_up(users))
    OrmQ.objects.all().delete()
    old_subscriptions = {s.id for s in sim.subscriptions.all()}

    wait_for(lambda: sim.streaming.open_stream_sizes() == [50, 200])
    assert sim.streaming.drop_all() == 2  # the network fails under both connections
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    sim.user("user123@contoso.example").create_event("During the gap", start, start + timedelta(hours=1))

    # Both groups reconnect with new subscriptions, and catch up every mailbox: the gap's change is
    # not replayed by the stream, the catch-up pass of its mailbox finds it.
    wait_for(lambda: caught_up(users))
    wait_for(lambda: sim.streaming.open_stream_sizes() == [50, 200])
    assert not old_subscriptions & {s.id for s in sim.subscriptions.all()}
    for row in OrmQ.objects.all():
        if SignedPackage.loads(row.payload)["args"][0] != users["user123@contoso.example"].pk:
            row.delete()
    run_queued_passes()
    assert Activity.objects.filter(subject="During the gap").exists()


def _calendar_push(email: str, env_id: int) -> dict | None:
    found = [u for u in runtime.status(env_id)["users"] if u["email"] == email]
    return found[0]["calendar"]["push"]


def test_the_status_shows_each_calendar_users_stream_and_says_when_no_listener_runs(crm, monkeypatch):
    monkeypatch.setattr(passes, "runnable_kind", calendar_only)
    crm.configure(push_enabled=True)
    crm.env.set_state(SynchronizerState.RUNNING)
    crm.sim.streaming.seconds_per_minute = 2
    alice = "alice@contoso.example"
    missing = _calendar_push(alice, crm.env.pk)
    assert missing["state"] == "failed" and "run_push_listener" in missing["error"]
    assert [u["contacts"]["push"] for u in runtime.status(crm.env.pk)["users"]] == [None, None]

    stop = threading.Event()
    thread = threading.Thread(target=push.run_listener, args=(stop,), kwargs={"poll_s": 0.3}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: _calendar_push(alice, crm.env.pk)["state"] == "active")
        crm.sim.streaming.drop_all()  # the network fails: the stream reports it, then recovers
        wait_for(lambda: "broke" in _calendar_push(alice, crm.env.pk)["error"])
        wait_for(lambda: _calendar_push(alice, crm.env.pk)["state"] == "active")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert _calendar_push(alice, crm.env.pk)["state"] == "failed"  # the listener left: said at once
    wait_for(lambda: crm.sim.streaming.open_streams == 0)


def test_a_user_who_joins_restarts_and_catches_up_one_group_not_all(big_org):
    sim, users = big_org
    wait_for(lambda: sim.streaming.open_stream_sizes() == [50, 200])
    wait_for(lambda: caught_up(users))
    OrmQ.objects.all().delete()
    first_group = {s.id for s in sim.subscriptions.all() if s.mailbox < "user200@contoso.example"}
    assert len(first_group) == 200

    # First in address order: cut by position, every group would change.
    sim.add_mailbox("aaron@contoso.example", "Aaron")
    env = next(iter(users.values())).environment
    newcomer = f.sync_user(env, "aaron@contoso.example")
    wait_for(lambda: sim.streaming.open_stream_sizes() == [51, 200])
    joined = {users[f"user{i:03d}@contoso.example"].pk for i in range(200, 250)} | {newcomer.pk}
    wait_for(lambda: {args[0] for args in push_passes()} == joined)
    assert first_group <= {s.id for s in sim.subscriptions.all()}  # the full group was left alone


def test_groups_keep_their_members_and_newcomers_fill_the_group_with_room(monkeypatch):
    users = {pk: f"u{pk:03d}@x.example" for pk in range(1, 6)}
    assert push.plan_groups(users, []) == [sorted(users.items())]
    monkeypatch.setattr(push, "GROUP_SIZE", 2)
    users[9] = "a@x.example"  # joins, first in address order
    del users[3]  # leaves
    assert push.plan_groups(users, [(2, 3), (4,)]) == [
        [(9, "a@x.example"), (2, "u002@x.example")],  # each group in address order: the anchor first
        [(1, "u001@x.example"), (4, "u004@x.example")],
        [(5, "u005@x.example")],
    ]
