"""O3 (issue 14, finding 2): one mailbox that cannot be watched never takes push away from the
others. Over EWS the listener leaves it out of the shared stream and retries it on its own with
back-off; over Graph its subscription fails alone. Either way another user's Outlook change reaches
the CRM by a push pass (the pull interval is a day, and no pull pass runs here)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from synccore.models import Activity, SynchronizerState, SyncRun
from synccore.runtime import passes
from synccore.runtime import service as runtime
from synccore.runtime.push import ews as ews_push
from synccore.runtime.push import graph as graph_push
from tests.fixtures import factories as f

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def calendar_only(user, kind) -> bool:
    # Calendar push alone here; tasks and e-mail push: tests/test_push_ews_tasks_email.py.
    return kind == "calendar"

# First in address order: over EWS it would be its group's anchor, the mailbox the stream impersonates.
GHOST = "aaron.gone@contoso.example"


def queued_passes() -> list[tuple]:
    found = []
    for row in OrmQ.objects.order_by("id"):
        task = SignedPackage.loads(row.payload)
        if task["func"] == "synccore.tasks.run_pass":
            found.append(tuple(task["args"]))
    return found


def push_passes_of(user) -> list[tuple]:
    return [args for args in queued_passes() if args[0] == user.pk and args[2] == "push"]


def run_queued_passes() -> None:
    """Do what a worker does with the queued passes (the cluster tests prove workers do)."""
    from synccore import tasks

    for row in OrmQ.objects.order_by("id"):
        task = SignedPackage.loads(row.payload)
        if task["func"] == "synccore.tasks.run_pass":
            tasks.run_pass(*task["args"], **task.get("kwargs", {}))
        row.delete()


def wait_for(predicate, timeout: float = 60):
    # Only a fact that never comes true ends here; how long it took is never asserted.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    raise AssertionError("timed out")


def push_of(env_id: int, email: str) -> dict:
    (user,) = [u for u in runtime.status(env_id)["users"] if u["email"] == email]
    return user["calendar"]["push"]


def outlook_lunch(crm, subject: str) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    crm.mailbox().create_event(subject, start, start + timedelta(hours=1))


def assert_reached_by_push_alone(crm, subject: str) -> None:
    run_queued_passes()
    assert Activity.objects.filter(subject=subject, created_by_erp=False).exists()
    triggers = set(SyncRun.objects.filter(sync_user=crm.alice, kind="calendar").values_list("trigger", flat=True))
    assert triggers == {"push"}  # no pull pass carried it


@pytest.fixture
def ews_listener(crm_ews, monkeypatch):
    crm = crm_ews
    monkeypatch.setattr(passes, "runnable_kind", calendar_only)
    crm.configure(push_enabled=True, pull_interval=1, pull_interval_unit="days")
    crm.sim.streaming.seconds_per_minute = 2  # a stream notices the listener's stop within 2 s
    ghost = f.sync_user(crm.env, GHOST)  # Exchange has no such mailbox
    crm.env.set_state(SynchronizerState.RUNNING)
    stop = threading.Event()
    thread = threading.Thread(
        target=ews_push.run_listener, args=(stop,), kwargs={"poll_s": 0.3}, daemon=True
    )
    thread.start()
    yield crm, ghost
    stop.set()
    thread.join(timeout=30)
    wait_for(lambda: crm.sim.streaming.open_streams == 0)


def test_o3_a_missing_mailbox_is_left_out_of_the_ews_stream_and_the_others_keep_their_push(ews_listener):
    crm, ghost = ews_listener
    wait_for(lambda: push_of(crm.env.pk, "alice@contoso.example")["state"] == "active")
    wait_for(lambda: push_of(crm.env.pk, GHOST)["state"] == "failed")
    # The others share one stream; the missing mailbox is retried on its own (it has no
    # subscription to stream, so no stream of its own stays open).
    wait_for(lambda: crm.sim.streaming.open_stream_sizes() == [2])
    ghost_push = push_of(crm.env.pk, GHOST)
    assert "no mailbox" in ghost_push["error"] and GHOST in ghost_push["error"]
    assert "pull only" in ghost_push["error"]
    assert push_of(crm.env.pk, "bob@contoso.example") == {"state": "active", "expires_at": None, "error": ""}

    wait_for(lambda: push_passes_of(crm.alice))  # the catch-up after subscribing
    run_queued_passes()
    SyncRun.objects.all().delete()
    outlook_lunch(crm, "Pushed past a missing mailbox")
    wait_for(lambda: push_passes_of(crm.alice))
    assert_reached_by_push_alone(crm, "Pushed past a missing mailbox")
    assert not push_passes_of(ghost)


def test_o3_a_mailbox_that_appears_later_gets_push_on_its_own_retry(ews_listener):
    crm, _ = ews_listener
    # Failed for its missing mailbox (not merely "no listener yet", which the status shows first).
    wait_for(lambda: "no mailbox" in push_of(crm.env.pk, GHOST)["error"])
    crm.sim.add_mailbox(GHOST, "Aaron")
    # Its own stream's back-off (which starts at 1 s) brings it back; the others are not restarted.
    wait_for(lambda: push_of(crm.env.pk, GHOST)["state"] == "active")
    wait_for(lambda: sorted(crm.sim.streaming.open_stream_sizes()) == [1, 2])
    assert push_of(crm.env.pk, "alice@contoso.example")["state"] == "active"


def test_o3_isolated_users_stream_alone_and_never_take_newcomers(monkeypatch):
    users = {1: "a@x.example", 2: "b@x.example", 3: "c@x.example", 4: "d@x.example"}
    # 2 failed while in the group (1, 2, 3): the group goes on without it, it streams alone.
    assert ews_push.plan_groups(users, [(1, 2, 3)], isolated={2}) == [
        [(1, "a@x.example"), (3, "c@x.example"), (4, "d@x.example")],
        [(2, "b@x.example")],
    ]
    # Back (its own stream subscribed): its group of one is a group like any other.
    assert ews_push.plan_groups(users, [(1, 3, 4), (2,)]) == [
        [(1, "a@x.example"), (3, "c@x.example"), (4, "d@x.example")],
        [(2, "b@x.example")],
    ]


@pytest.fixture
def graph_hooked(crm_graph, live_server, settings, monkeypatch):
    crm = crm_graph
    settings.PUBLIC_BASE_URL = live_server.url
    crm.configure(push_enabled=True, pull_interval=1, pull_interval_unit="days")
    crm.sim.graph.subscriptions.retry_delays = [0.1]
    ghost = f.sync_user(crm.env, GHOST)
    crm.env.set_state(SynchronizerState.RUNNING)
    return crm, ghost


def test_o3_a_missing_mailbox_fails_its_graph_subscription_alone_and_the_others_keep_their_push(graph_hooked):
    crm, ghost = graph_hooked
    assert graph_push.maintain(crm.env.pk) == {"created": 2, "renewed": 0, "removed": 0, "failed": 1}
    ghost_push = push_of(crm.env.pk, GHOST)
    assert ghost_push["state"] == "failed" and "pull only" in ghost_push["error"]
    assert push_of(crm.env.pk, "alice@contoso.example")["state"] == "active"
    run_queued_passes()  # the catch-ups after subscribing
    SyncRun.objects.all().delete()

    outlook_lunch(crm, "Pushed past a missing mailbox")
    assert crm.sim.graph.subscriptions.wait_idle()
    assert push_passes_of(crm.alice) and not push_passes_of(ghost)
    assert_reached_by_push_alone(crm, "Pushed past a missing mailbox")

    # Retried on its own at the next maintenance run; the others are left as they are.
    assert graph_push.maintain(crm.env.pk) == {"created": 0, "renewed": 0, "removed": 0, "failed": 1}
