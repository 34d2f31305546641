"""The synchronizer runtime with real qcluster processes (issue 7, S1–S3): start, ticks, stop,
interval changes, bad credentials, a worker killed mid-pass, and two clusters sharing the work.

Runs on the database of the test run (SQLite or PostgreSQL; ORM broker) and on Redis. Intervals
are in seconds here (SYNC_TEST_SECONDS_PER_UNIT); nothing asserts how long anything took.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket

import pytest
from django.db import connection
from django_q.models import Schedule

from synccore.models import Environment, ItemLink, Outcome, SynchronizerState, SyncRun, Trigger, UserLease
from synccore.runtime.queue import tick_schedule_name
from tests.conftest import IN_CI, require
from tests.fixtures import factories as f
from tests.runtime_cluster import Cluster, last_json, manage, runtime_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def clusters(tmp_path):
    started: list[Cluster] = []

    def start(env: dict[str, str]) -> Cluster:
        cluster = Cluster(env, tmp_path / f"qcluster-{len(started)}.log")
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


def runs(env: Environment, **filters) -> list[SyncRun]:
    return list(SyncRun.objects.filter(environment=env, **filters).order_by("started_at"))


def finished(env: Environment, **filters) -> list[SyncRun]:
    return [run for run in runs(env, **filters) if run.outcome != Outcome.RUNNING]


def synchronizer(action: str, env: Environment, renv: dict[str, str]):
    return manage("synchronizer", action, "--environment", env.name, env=renv)


def start_stop_cycle(crm, clusters, renv: dict[str, str]) -> None:
    for i in range(3):
        f.contact(crm.env, first_name="Ann", last_name=f"Lee {i}")
    crm.configure(pull_interval=2)  # two seconds in tests
    clusters(renv)

    started = synchronizer("start", crm.env, renv)
    assert started.returncode == 0, started.stderr
    assert last_json(started.stdout)["state"] == "running"
    assert Schedule.objects.filter(name=tick_schedule_name(crm.env)).exists()

    # The first pass runs at once, for each user.
    # For each user (a user's contact and calendar passes may meet at its lease: the deferred one
    # runs again later, and rarely a re-run comes on top of a pass that ran, so not exactly two).
    first = wait_for(
        lambda: {run.sync_user_id for run in finished(crm.env, trigger=Trigger.START, kind="contacts")}
        == {crm.alice.pk, crm.bob.pk},
        what="first passes",
    )
    assert first
    assert {run.outcome for run in runs(crm.env, trigger=Trigger.START, kind="contacts")} == {Outcome.SUCCESS}
    # Then ticks follow the interval: scheduled passes for both users, again and again.
    wait_for(
        lambda: all(len(finished(crm.env, trigger=Trigger.SCHEDULE, sync_user=u)) >= 2 for u in (crm.alice, crm.bob)),
        what="two scheduled passes per user",
    )
    assert crm.mailbox().contacts() and len(crm.mailbox().contacts()) == 3

    status = last_json(synchronizer("status", crm.env, renv).stdout)
    assert status["state"] == "running" and status["workers"], status
    assert {user["email"] for user in status["users"]} == {"alice@contoso.example", "bob@contoso.example"}
    # Ticks keep coming: the last pass may be one still running (ticks are two seconds apart).
    assert status["users"][0]["contacts"]["last_pass"]["outcome"] in (Outcome.SUCCESS, Outcome.RUNNING)
    assert status["users"][0]["contacts"]["next_due"]

    stopped = synchronizer("stop", crm.env, renv)
    assert stopped.returncode == 0, stopped.stderr
    assert last_json(stopped.stdout)["state"] == "stopped"
    assert not Schedule.objects.filter(name=tick_schedule_name(crm.env)).exists()
    # A pass in flight (it saw "running" under its lease before the stop) ends at its next item
    # boundary and lets go of its lease; one that looks later is skipped.
    wait_for(
        lambda: (not runs(crm.env, outcome=Outcome.RUNNING)
        and not UserLease.objects.filter(sync_user__environment=crm.env).exclude(holder="").exists())
        or None,
        what="passes in flight to end",
    )
    count = SyncRun.objects.filter(environment=crm.env).count()
    # Several intervals later nothing new has started.
    with pytest.raises(AssertionError):
        wait_for(lambda: SyncRun.objects.filter(environment=crm.env).count() > count, timeout=6)


@pytest.mark.dbbehaviour
def test_start_runs_a_first_pass_ticks_follow_the_interval_and_stop_ends_them_orm_broker(crm, clusters):
    start_stop_cycle(crm, clusters, runtime_env(broker="orm"))


def test_start_runs_a_first_pass_ticks_follow_the_interval_and_stop_ends_them_redis_broker(crm, clusters):
    require(redis_available(), "Redis on 127.0.0.1:6379")
    start_stop_cycle(crm, clusters, runtime_env(broker="redis", REDIS_URL="redis://127.0.0.1:6379/0"))


@pytest.mark.dbbehaviour
def test_an_interval_change_while_running_takes_effect_without_a_restart(crm, clusters):
    renv = runtime_env()
    crm.configure(pull_interval=100_000)  # effectively never, in test seconds
    clusters(renv)
    assert synchronizer("start", crm.env, renv).returncode == 0
    wait_for(lambda: len(finished(crm.env, trigger=Trigger.START, kind="contacts")) == 2 or None, what="first passes")
    assert not runs(crm.env, trigger=Trigger.SCHEDULE)

    crm.configure(pull_interval=1)
    wait_for(
        lambda: len(finished(crm.env, trigger=Trigger.SCHEDULE, sync_user=crm.alice)) >= 2 or None,
        what="scheduled passes at the new interval",
    )
    Environment.objects.get(pk=crm.env.pk)  # still the same start: no restart happened
    assert len(runs(crm.env, trigger=Trigger.START, kind="contacts")) == 2
    assert synchronizer("stop", crm.env, renv).returncode == 0


@pytest.mark.dbbehaviour
def test_start_with_bad_credentials_fails_with_a_readable_reason_and_leaves_no_schedule(crm):
    crm.configure(service_password="wrong-password")
    renv = runtime_env()
    result = synchronizer("start", crm.env, renv)
    assert result.returncode == 1
    env = Environment.objects.get(pk=crm.env.pk)
    assert env.state == SynchronizerState.FAILED
    assert env.state_reason and env.state_reason in result.stderr
    assert "credential" in env.state_reason.lower() or "password" in env.state_reason.lower() or (
        "401" in env.state_reason or "auth" in env.state_reason.lower()
    ), env.state_reason
    assert not Schedule.objects.filter(name=tick_schedule_name(crm.env)).exists()
    assert last_json(result.stdout)["state"] == "failed"
    assert not SyncRun.objects.filter(environment=crm.env).exists()


@pytest.mark.dbbehaviour
def test_a_worker_killed_mid_pass_loses_its_lease_and_the_next_pass_completes_without_duplicates(
    crm, clusters
):
    contacts = [f.contact(crm.env, first_name="Kim", last_name=f"Crash {i:03d}") for i in range(30)]
    crm.configure(pull_interval=2, batch_size=2)
    crm.alice.calendar_enabled = crm.bob.active = False
    crm.alice.save()
    crm.bob.save()
    crm.sim.faults.latency_ms = 150  # a pass of several seconds, so there is a middle to die in
    renv = runtime_env(SYNC_LEASE_SECONDS=3)
    clusters(renv)
    assert synchronizer("start", crm.env, renv).returncode == 0

    def victim():
        run = SyncRun.objects.filter(sync_user=crm.alice, outcome=Outcome.RUNNING, progress_done__gt=0).first()
        holder = UserLease.objects.filter(sync_user=crm.alice).values_list("holder", flat=True).first()
        return (run, holder) if run and holder else None

    run, holder = wait_for(victim, what="a pass in the middle of writing")
    pid = int(holder.split(":")[1])
    os.kill(pid, signal.SIGKILL)

    crm.sim.faults.latency_ms = 0
    # The lease expires, a later pass takes the mailbox over and completes.
    done = wait_for(
        lambda: SyncRun.objects.filter(
            sync_user=crm.alice, outcome=Outcome.SUCCESS, started_at__gt=run.started_at
        ).first(),
        what="a pass after the crash to complete",
    )
    assert done
    assert synchronizer("stop", crm.env, renv).returncode == 0
    killed = SyncRun.objects.get(pk=run.pk)
    assert killed.outcome == Outcome.FAILED and "worker" in killed.error
    # No duplicates, nothing lost: each contact exactly once in the mailbox and once linked.
    names = sorted(item.props.get("DisplayName") for item in crm.mailbox().contacts())
    assert names == sorted(f"Kim Crash {i:03d}" for i in range(30))
    assert ItemLink.objects.filter(sync_user=crm.alice).count() == len(contacts)


def test_two_clusters_on_postgresql_sync_every_user_each_tick_never_two_at_once_per_mailbox(
    exchange_sim_factory, clusters
):
    if connection.vendor != "postgresql":
        if IN_CI:
            pytest.skip("runs in the PostgreSQL phase of CI (SQLite allows one cluster only)")
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...)")
    emails = [f"user{i:02d}@contoso.example" for i in range(20)]
    sim = exchange_sim_factory(mailboxes=emails)
    env = f.environment(
        "Scale-out",
        ews_url=sim.url,
        auth_type="basic",
        service_account=sim.credentials[0],
        service_password=sim.credentials[1],
        synchronize_contacts=True,
        synchronize_activities=False,
        pull_interval=3,
    )
    users = [f.sync_user(env, email) for email in emails]
    for i in range(2):
        f.contact(env, first_name="Sam", last_name=f"Scale {i}")
    sim.faults.latency_ms = 20
    renv = runtime_env()
    clusters(renv)
    clusters({**renv})  # a second cluster, same database and queue
    assert synchronizer("start", env, renv).returncode == 0
    # Contention on purpose: manual passes for everyone on top of the schedule.
    for _ in range(2):
        assert manage("shell", "-c", f"from synccore.runtime import service; service.sync_now({env.pk})", env=renv).returncode == 0

    def every_user_synced_twice_by_schedule():
        per_user = {
            user.pk: SyncRun.objects.filter(sync_user=user, trigger=Trigger.SCHEDULE, outcome=Outcome.SUCCESS).count()
            for user in users
        }
        return all(count >= 2 for count in per_user.values())

    wait_for(every_user_synced_twice_by_schedule, timeout=120, what="every user synced on two ticks")
    assert synchronizer("stop", env, renv).returncode == 0
    wait_for(lambda: not SyncRun.objects.filter(environment=env, outcome=Outcome.RUNNING).exists(), what="the end")

    all_runs = list(SyncRun.objects.filter(environment=env).order_by("started_at"))
    assert len({run.worker.rsplit(":", 1)[0] for run in all_runs if run.worker}) >= 1
    workers = {run.worker for run in all_runs if run.worker}
    assert len(workers) >= 2, "the work was shared by several worker processes"
    for user in users:
        mine = [run for run in all_runs if run.sync_user_id == user.pk]
        for earlier, later in itertools.pairwise(mine):
            assert earlier.finished_at <= later.started_at, f"two passes at once for {user}"
    for user in users:
        assert len(sim.user(user.mailbox_email).contacts()) == 2
