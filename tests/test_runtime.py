"""Runtime rules in-process (issue 7): leases, fan-out, back-off, push enqueueing, pruning.

Tasks are enqueued on the ORM broker and read back from its queue table; the real clusters are
in test_runtime_cluster.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from synccore.models import Health, Outcome, SynchronizerState, SyncRun, Trigger, UserLease
from synccore.runtime import housekeeping, leases, passes, queue, scheduling
from synccore.runtime import service as runtime
from tests.fixtures import factories as f

pytestmark = pytest.mark.django_db


def queued() -> list[tuple[str, tuple]]:
    tasks = [SignedPackage.loads(row.payload) for row in OrmQ.objects.order_by("id")]
    return [(task["func"], tuple(task["args"])) for task in tasks]


def queued_passes(user=None) -> list[tuple]:
    """(user id, kind, trigger, full) of each queued pass, batches (`run_passes`) unfolded."""
    found = []
    for func, args in queued():
        if func == "synccore.tasks.run_pass":
            found.append(args)
        elif func == "synccore.tasks.run_passes":
            found += [(user_id, *args[1:]) for user_id in args[0]]
    return [args for args in found if user is None or args[0] == user.pk]


def running(crm) -> None:
    crm.env.set_state(SynchronizerState.RUNNING)


class TestLease:
    def test_a_held_lease_cannot_be_taken_by_another_holder(self, crm):
        assert leases.acquire(crm.alice.pk, "a", ttl_s=60)
        assert not leases.acquire(crm.alice.pk, "b", ttl_s=60)
        leases.release(crm.alice.pk, "a")
        assert leases.acquire(crm.alice.pk, "b", ttl_s=60)

    def test_an_expired_lease_of_a_dead_worker_is_taken_over_and_its_owner_cannot_renew_it(self, crm):
        assert leases.acquire(crm.alice.pk, "dead", ttl_s=60)
        UserLease.objects.filter(sync_user=crm.alice).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert leases.acquire(crm.alice.pk, "alive", ttl_s=60)
        assert not leases.renew(crm.alice.pk, "dead")

    def test_a_pass_finding_the_mailbox_busy_asks_for_a_rerun_instead_of_being_dropped(self, crm):
        running(crm)
        assert leases.acquire(crm.alice.pk, "other-worker", ttl_s=60)
        assert passes.run_pass(crm.alice.pk, "contacts", Trigger.PUSH).startswith("deferred")
        assert not SyncRun.objects.exists()
        assert leases.take_reruns(crm.alice.pk) == [("contacts", Trigger.PUSH)]
        assert leases.take_reruns(crm.alice.pk) == []  # handed out once

    def test_a_pass_closes_the_run_left_running_by_a_dead_worker(self, crm):
        running(crm)
        orphan = SyncRun.objects.create(environment=crm.env, sync_user=crm.alice, kind="contacts")
        passes.run_pass(crm.alice.pk, "contacts", Trigger.SCHEDULE)
        orphan.refresh_from_db()
        assert orphan.outcome == Outcome.FAILED and "worker" in orphan.error
        assert SyncRun.objects.filter(outcome=Outcome.SUCCESS, sync_user=crm.alice).count() == 1


class TestFanOut:
    @pytest.fixture(autouse=True)
    def _contacts_only(self, crm):
        crm.configure(synchronize_activities=False)  # counts below are per contact pass

    @pytest.mark.backends("ews", "graph")  # start tests the connection through either backend
    def test_start_enqueues_the_first_passes_at_once_and_schedules_a_tick(self, crm):
        runtime.start(crm.env.pk)
        assert sorted(queued_passes()) == sorted(
            [(crm.alice.pk, "contacts", "start", False), (crm.bob.pk, "contacts", "start", False)]
        )
        assert Schedule.objects.filter(name=queue.tick_schedule_name(crm.env), func="synccore.tasks.tick").exists()

    def test_a_tick_enqueues_only_what_is_due_under_the_current_interval(self, crm):
        runtime.start(crm.env.pk)
        OrmQ.objects.all().delete()
        assert scheduling.tick(crm.env.pk) == 0  # just enqueued by start
        UserLease.objects.update(contacts_enqueued_at=timezone.now() - timedelta(minutes=16))
        assert scheduling.tick(crm.env.pk) == 2
        assert scheduling.tick(crm.env.pk) == 0  # claimed once
        crm.configure(pull_interval=5)  # takes effect without a restart
        UserLease.objects.update(contacts_enqueued_at=timezone.now() - timedelta(minutes=6))
        assert scheduling.tick(crm.env.pk) == 2

    def test_backing_off_and_unhealthy_users_are_skipped_until_reenabled(self, crm):
        crm.alice.health, crm.alice.backoff_until = Health.BACKING_OFF, timezone.now() + timedelta(minutes=5)
        crm.alice.save()
        crm.bob.health = Health.UNHEALTHY
        crm.bob.save()
        runtime.start(crm.env.pk)
        assert queued_passes() == []
        assert passes.run_pass(crm.bob.pk, "contacts", Trigger.SCHEDULE) == "skipped: unhealthy"
        runtime.reenable(crm.bob.pk)
        assert queued_passes(crm.bob) == [(crm.bob.pk, "contacts", "manual", False)]

    def test_stop_removes_the_schedule_and_queued_passes_do_not_start(self, crm):
        runtime.start(crm.env.pk)
        runtime.stop(crm.env.pk)
        assert not Schedule.objects.filter(name=queue.tick_schedule_name(crm.env)).exists()
        assert passes.run_pass(crm.alice.pk, "contacts", Trigger.START).startswith("skipped")
        assert scheduling.tick(crm.env.pk) == 0

    def test_s1_a_pass_that_reaches_its_lease_after_a_stop_does_not_start(self, crm, monkeypatch):
        # It looked before the stop (running), then waited for the mailbox's lease meanwhile.
        runtime.start(crm.env.pk)
        acquire = leases.acquire

        def stopped_meanwhile(*args, **kwargs):
            runtime.stop(crm.env.pk)
            return acquire(*args, **kwargs)

        monkeypatch.setattr(leases, "acquire", stopped_meanwhile)
        before = SyncRun.objects.count()
        assert passes.run_pass(crm.alice.pk, "contacts", Trigger.SCHEDULE) == "skipped: the synchronizer is stopped"
        assert SyncRun.objects.count() == before
        assert not UserLease.objects.exclude(holder="").exists()

    def test_status_has_the_pinned_shape(self, crm):
        runtime.start(crm.env.pk)
        body = runtime.status(crm.env.pk)
        assert {"environment", "state", "since", "queue_depth", "workers", "users"} <= body.keys()
        user = body["users"][0]
        assert {"email", "health", "last_error", "contacts", "calendar"} <= user.keys()
        assert {"last_pass", "next_due"} <= user["contacts"].keys()
        assert body["queue_depth"] == 1  # Alice's and Bob's first contact passes, in one task


class TestPushEnqueue:
    def test_a_crm_change_enqueues_a_calendar_pass_for_the_users_concerned_after_commit(
        self, crm, django_capture_on_commit_callbacks, monkeypatch
    ):
        monkeypatch.setattr(passes, "runnable_kind", lambda user, kind: True)
        crm.configure(push_enabled=True)
        running(crm)
        activity = f.activity(crm.env, organizer=crm.alice.employee)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            runtime.notify_crm_change(crm.env.pk, [activity.pk])
        assert queued_passes() == []  # nothing before the commit
        for callback in callbacks:
            callback()
        assert queued_passes() == [(crm.alice.pk, "calendar", "push", False)]

    def test_no_push_pass_when_push_is_off_or_the_synchronizer_stopped(
        self, crm, django_capture_on_commit_callbacks, monkeypatch
    ):
        monkeypatch.setattr(passes, "runnable_kind", lambda user, kind: True)
        activity = f.activity(crm.env, organizer=crm.alice.employee)
        with django_capture_on_commit_callbacks(execute=True):
            runtime.notify_crm_change(crm.env.pk, [activity.pk])  # stopped, push off
        crm.configure(push_enabled=True)
        with django_capture_on_commit_callbacks(execute=True):
            runtime.notify_crm_change(crm.env.pk, [activity.pk])  # still stopped
        assert queued_passes() == []

    def test_a_streaming_notification_enqueues_a_calendar_pass_for_that_mailbox(self, crm, monkeypatch):
        monkeypatch.setattr(passes, "runnable_kind", lambda user, kind: True)
        running(crm)
        assert passes.push_calendar(crm.bob.pk)
        assert queued_passes() == [(crm.bob.pk, "calendar", "push", False)]


def test_prune_removes_rows_older_than_the_retention(crm, settings):
    settings.SYNC_RETENTION_DAYS = 10
    old = timezone.now() - timedelta(days=11)
    SyncRun.objects.create(environment=crm.env, sync_user=crm.alice, kind="contacts", started_at=old, finished_at=old)
    recent = SyncRun.objects.create(
        environment=crm.env, sync_user=crm.alice, kind="contacts", finished_at=timezone.now()
    )
    assert housekeeping.prune()["runs"] == 1
    assert list(SyncRun.objects.all()) == [recent]
