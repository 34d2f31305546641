"""Passes at once inside a worker (issue 17): a task carries several mailboxes' passes of one kind,
run on PASS_THREADS threads, each under its own lease; at most SYNC_EWS_CONCURRENT_PASSES at once
per EWS service account over every worker; a pass failing in one thread leaves the others alone.

Overlap and caps are read from run timestamps and counters, never from how long anything took.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from synccore.models import ConnectionSlot, Outcome, SynchronizerState, SyncRun, Trigger, UserLease
from synccore.runtime import passes, scheduling, slots
from synccore.runtime import service as runtime
from tests.fixtures import factories as f
from tests.runtime_cluster import Cluster, manage, runtime_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

OTHERS = ("carol@contoso.example", "dave@contoso.example")


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    open_now = peak = 0
    for _, step in edges:
        open_now += step
        peak = max(peak, open_now)
    return peak


@pytest.fixture
def four_users(crm):
    crm.configure(synchronize_activities=False)
    f.contact(crm.env, first_name="Ann", last_name="Lee")
    return [crm.alice, crm.bob, *(f.sync_user(crm.env, email) for email in OTHERS)]


def test_a_tick_enqueues_the_due_passes_in_tasks_of_pass_threads_mailboxes(crm, four_users, settings):
    settings.PASS_THREADS = 3
    crm.env.set_state(SynchronizerState.RUNNING)
    assert scheduling.tick(crm.env.pk) == 4
    tasks = [SignedPackage.loads(row.payload) for row in OrmQ.objects.order_by("id")]
    ids = [u.pk for u in four_users]
    assert [(t["func"], tuple(t["args"])) for t in tasks] == [
        ("synccore.tasks.run_passes", (ids[:3], "contacts", "schedule", False)),
        ("synccore.tasks.run_pass", (ids[3], "contacts", "schedule", False)),
    ]


def test_a_failing_pass_in_one_thread_never_stops_the_others(crm, four_users, monkeypatch):
    runner = passes.pass_runner

    def failing_for_alice(kind):
        def run(user_id, ctx):
            if user_id == crm.alice.pk:
                raise RuntimeError("boom")
            return runner(kind)(user_id, ctx)

        return run

    monkeypatch.setattr(passes, "pass_runner", failing_for_alice)
    results = runtime.run_pass_batch([u.pk for u in four_users], "contacts", Trigger.MANUAL, threads=4)
    assert results[0] == "failed: boom"
    assert results[1:] == ["success"] * 3
    assert {run.sync_user_id for run in SyncRun.objects.filter(outcome=Outcome.SUCCESS)} == {u.pk for u in four_users[1:]}
    assert not UserLease.objects.exclude(holder="").exists()  # the failed pass let go of its mailbox
    assert not ConnectionSlot.objects.exclude(holder="").exists()


def test_ews_passes_at_once_stay_within_the_service_accounts_cap(crm, four_users, monkeypatch, settings):
    settings.SYNC_EWS_CONCURRENT_PASSES = 2
    runner, lock, inside, most = passes.pass_runner, threading.Lock(), [0], [0]
    # Two passes meet here, so they provably run at once; a third at once would pass the cap.
    meet = threading.Barrier(2, timeout=30)

    def counted(kind):
        def run(user_id, ctx):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            try:
                meet.wait()
                return runner(kind)(user_id, ctx)
            finally:
                with lock:
                    inside[0] -= 1

        return run

    monkeypatch.setattr(passes, "pass_runner", counted)
    results = runtime.run_pass_batch([u.pk for u in four_users], "contacts", Trigger.MANUAL, threads=4)
    assert results == ["success"] * 4
    assert most[0] == 2
    account = slots.account_key(crm.alice)
    assert account == f"ews {crm.sim.credentials[0]} {crm.env.settings.ews_url.split('/')[2]}".lower()
    assert slots.held(account) == 0


def test_a_slot_is_one_holders_until_released_or_expired(crm):
    account = slots.account_key(crm.alice)
    assert slots.acquire(account, "a", 2, 60) and slots.acquire(account, "b", 2, 60)
    assert not slots.acquire(account, "c", 2, 60)
    slots.release(account, "a")
    assert slots.acquire(account, "c", 2, 60)
    ConnectionSlot.objects.filter(holder="b").update(expires_at=datetime(2000, 1, 1, tzinfo=UTC))
    assert slots.acquire(account, "d", 2, 60)  # b's worker died: its slot expired


@pytest.mark.backends("graph")
def test_graph_passes_at_once_stay_within_4_requests_per_app_and_mailbox(crm, four_users):
    assert slots.account_key(crm.alice) == ""  # no slot: the mailbox's lease and the backend bound it
    for i in range(100):  # several $batch requests per mailbox, which the backend sends side by side
        f.contact(crm.env, first_name="Kim", last_name=f"Batch {i:03d}")
    crm.sim.graph.throttling.concurrency = 4  # Graph answers 429 beyond it
    enter, throttled = crm.sim.graph.throttling.enter, []

    def counted(app, mailbox):
        try:
            enter(app, mailbox)
        except Exception:
            throttled.append(mailbox)
            raise

    crm.sim.graph.throttling.enter = counted
    results = runtime.run_pass_batch([u.pk for u in four_users], "contacts", Trigger.MANUAL, threads=4)
    assert results == ["success"] * 4
    assert throttled == []
    for user in four_users:
        assert len(crm.mailbox(user).contacts()) == 101


@pytest.mark.backends("graph")
def test_graph_passes_at_once_in_a_cold_worker_ask_for_one_token(crm, four_users):
    # No token cached in this process yet (the crm fixture forgot them): the first pass asks.
    crm.sim.counters.reset()
    results = runtime.run_pass_batch([u.pk for u in four_users], "contacts", Trigger.MANUAL, threads=4)
    assert results == ["success"] * 4
    assert crm.sim.counters["graph.token"] == 1


@pytest.mark.slow
@pytest.mark.dbbehaviour
def test_one_worker_runs_a_ticks_passes_at_once_within_the_cap(exchange_sim_factory, tmp_path):
    emails = [f"user{i:02d}@contoso.example" for i in range(8)]
    sim = exchange_sim_factory(mailboxes=emails)
    env = f.environment(
        "Threads",
        ews_url=sim.url,
        auth_type="basic",
        service_account=sim.credentials[0],
        service_password=sim.credentials[1],
        synchronize_contacts=True,
        synchronize_activities=False,
        pull_interval=600,  # only the first passes within the test
    )
    users = [f.sync_user(env, email) for email in emails]
    f.contact(env, first_name="Sam", last_name="Threads")
    sim.faults.latency_ms = 100  # each pass waits on the wire, as against Exchange
    renv = runtime_env(Q_WORKERS=1, PASS_THREADS=4, SYNC_EWS_CONCURRENT_PASSES=3)
    cluster = Cluster(renv, tmp_path / "qcluster.log")
    try:
        assert manage("synchronizer", "start", "--environment", env.name, env=renv).returncode == 0
        started = SyncRun.objects.filter(environment=env, trigger=Trigger.START)
        wait_for(
            lambda: started.exclude(outcome=Outcome.RUNNING).count() == len(users),
            timeout=120,
            what="every user's first pass",
        )
        assert manage("synchronizer", "stop", "--environment", env.name, env=renv).returncode == 0
    finally:
        cluster.stop()
    runs = list(started)
    assert {run.outcome for run in runs} == {Outcome.SUCCESS}, cluster.output()[-3000:]
    assert len({run.worker for run in runs}) == 1  # one worker process ran them all
    at_once = most_at_once([(run.started_at, run.finished_at) for run in runs])
    assert 2 <= at_once <= 3, at_once  # passes overlapped, never more than the account's cap
    for user in users:
        assert len(sim.user(user.mailbox_email).contacts()) == 1
    env.refresh_from_db()
    assert env.state == SynchronizerState.STOPPED
