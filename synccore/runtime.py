"""The synchronizer runtime: service functions used by the console, the API and commands.

start / stop / sync_now / status / test_connection take ids and return plain data. They are the
only door the edges use; the scheduling behind them (django-q2) lives here too.

Illegal transitions raise ``IllegalTransition`` (the API answers 409); a start whose settings or
connection fail raises ``StartFailed`` after moving the environment to "failed" with the reason.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from synccore import leases
from synccore.models import (
    Activity,
    Attendee,
    Environment,
    Health,
    SynchronizerState,
    SyncKind,
    SyncRun,
    SyncUser,
    Trigger,
    UserLease,
)
from synccore.models.crm import purge_tombstones_older_than
from synccore.sync import contacts
from synccore.sync.connection import ConnectionReport, check_connection
from synccore.sync.service import kind_enabled, pass_runner

log = logging.getLogger(__name__)

KINDS = (SyncKind.CONTACTS, SyncKind.CALENDAR)


class RuntimeServiceError(Exception):
    """Base of the runtime's errors; the message is for people."""


class IllegalTransition(RuntimeServiceError):
    pass


class StartFailed(RuntimeServiceError):
    pass


class UnknownUser(RuntimeServiceError):
    pass


def _locked_environment(environment_id: int) -> Environment:
    return Environment.objects.select_for_update().get(pk=environment_id)


def start(environment_id: int) -> dict[str, Any]:
    """Validate, test the connection, move to running and enqueue the first pass (S1)."""
    with transaction.atomic():
        env = _locked_environment(environment_id)
        if env.state in (SynchronizerState.RUNNING, SynchronizerState.STARTING):
            raise IllegalTransition(f"The synchronizer of {env.name} is already {env.state}.")
        if env.state == SynchronizerState.STOPPING:
            raise IllegalTransition(
                f"The synchronizer of {env.name} is still stopping; start it once it has stopped."
            )
        env.set_state(SynchronizerState.STARTING)
    problems = env.settings.connection_problems()
    if problems:
        _fail_start(env, " ".join(problems))
    report = test_connection(environment_id)
    if not report.ok:
        _fail_start(env, report.error or "The connection test failed.")
    # Running before anything is enqueued: passes refuse to start for an environment not running.
    env.set_state(SynchronizerState.RUNNING)
    _schedule(env)
    return status(environment_id)


def _fail_start(env: Environment, reason: str) -> None:
    # Nothing may keep ticking for an environment that failed to start.
    _unschedule(env)
    env.set_state(SynchronizerState.FAILED, reason)
    raise StartFailed(reason)


def stop(environment_id: int) -> dict[str, Any]:
    """No new passes; a pass in flight stops at its next item boundary (S1)."""
    with transaction.atomic():
        env = _locked_environment(environment_id)
        if env.state in (SynchronizerState.STOPPED, SynchronizerState.STOPPING):
            raise IllegalTransition(f"The synchronizer of {env.name} is not running.")
        env.set_state(SynchronizerState.STOPPING)
    _unschedule(env)
    env.set_state(SynchronizerState.STOPPED)
    from synccore import graph_push

    graph_push.stopped(env)  # a worker removes the Graph subscriptions (no Graph call here)
    return status(environment_id)


def sync_now(
    environment_id: int, *, user_email: str | None = None, kind: str = "all", full: bool = False
) -> dict[str, Any]:
    """Enqueue passes now for one user or every active user (S4 when full)."""
    env = Environment.objects.get(pk=environment_id)
    users = _users(env, user_email)
    kinds = list(KINDS) if kind == "all" else [SyncKind(kind)]
    trigger = Trigger.FULL if full else Trigger.MANUAL
    broker = _broker()
    for one_kind in kinds:  # kind by kind: see _schedule
        for user in users:
            if _runnable_kind(user, one_kind):
                _enqueue_pass(user, one_kind, full=full, trigger=trigger, broker=broker)
    return status(environment_id)


def sync_all(environment_id: int, *, user_email: str | None = None) -> dict[str, Any]:
    """S4: a full re-sync (every item re-written), per user or for the whole environment."""
    return sync_now(environment_id, user_email=user_email, kind="all", full=True)


def _users(env: Environment, user_email: str | None) -> list[SyncUser]:
    users = SyncUser.objects.filter(environment=env, active=True).select_related("environment__settings")
    if user_email:
        users = users.filter(mailbox_email__iexact=user_email)
        if not users:
            raise UnknownUser(f"{user_email} is not an active sync user of {env.name}.")
    return list(users)


def test_connection(environment_id: int) -> ConnectionReport:
    """Try the environment's Exchange connection and say what was tried and why it failed."""
    env = Environment.objects.select_related("settings").get(pk=environment_id)
    problems = env.settings.connection_problems()
    if problems:
        return ConnectionReport(ok=False, tried=["Checked the settings"], error=" ".join(problems))
    return check_connection(env)


def status(environment_id: int) -> dict[str, Any]:
    """The runtime status for the console and the API (S2)."""
    env = Environment.objects.select_related("settings").get(pk=environment_id)
    users = SyncUser.objects.filter(environment=env).select_related("lease").order_by("mailbox_email")
    last_runs = _last_runs(env)
    from synccore import push
    from synccore.graph_push import status_by_user

    # Push over Graph (subscriptions) or EWS (the listener's streams): None where nothing is held.
    subscriptions = {**status_by_user(env), **push.status_by_user(env)}
    return {
        "environment": env.name,
        "id": env.pk,
        "state": env.state,
        "since": _iso(env.state_changed_at),
        "reason": env.state_reason,
        "queue_depth": _queue_depth(),
        "workers": _workers(),
        "users": [
            {
                "email": user.mailbox_email,
                "active": user.active,
                "health": user.health,
                "last_error": user.last_error,
                **{
                    kind.value: {
                        "enabled": user.contacts_enabled
                        if kind == SyncKind.CONTACTS
                        else user.calendar_enabled,
                        "last_pass": _run_summary(last_runs.get((user.pk, kind.value))),
                        "next_due": _iso(_next_due(env, user, kind)),
                        "push": subscriptions.get((user.pk, kind.value)),
                    }
                    for kind in KINDS
                },
            }
            for user in users
        ],
    }


def _last_runs(env: Environment) -> dict[tuple[int, str], SyncRun]:
    latest: dict[tuple[int, str], SyncRun] = {}
    # One query: newest first, keep the first per (user, kind).
    for run in SyncRun.objects.filter(environment=env, sync_user__isnull=False).order_by("-started_at")[
        :2000
    ]:
        latest.setdefault((run.sync_user_id, run.kind), run)
    return latest


def _run_summary(run: SyncRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.pk,
        "trigger": run.trigger,
        "outcome": run.outcome,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration_s": run.duration_s,
        "progress": {"done": run.progress_done, "total": run.progress_total},
        "error": run.error,
        **run.counts(),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _next_due(env: Environment, user: SyncUser, kind: SyncKind) -> datetime | None:
    if env.state != SynchronizerState.RUNNING or not user.active or user.health == Health.UNHEALTHY:
        return None
    lease = getattr(user, "lease", None)
    enqueued = getattr(lease, _enqueued_field(kind)) if lease else None
    due = (enqueued or timezone.now()) + pull_interval(env)
    if user.backoff_until and user.backoff_until > due:
        due = user.backoff_until
    return due


# --- Configuration ------------------------------------------------------------------------------
#
# Read from Django settings first, then from the process environment, so a test can hand them to a
# qcluster subprocess without a settings module of its own.


def _conf(name: str, default: float) -> float:
    value = getattr(django_settings, name, None)
    if value in (None, ""):
        value = os.environ.get(name, "")
    return float(value) if value not in (None, "") else default


def lease_ttl_s() -> float:
    """How long a lease lives without renewal: how soon a dead worker's mailbox is taken over."""
    return _conf("SYNC_LEASE_SECONDS", leases.DEFAULT_TTL_S)


def retention_days() -> float:
    return _conf("SYNC_RETENTION_DAYS", 30)


def _test_tick_s() -> float:
    """Test only: tick every this many seconds (a self-renewing task) instead of once a minute."""
    return _conf("SYNC_TEST_TICK_SECONDS", 0)


def pull_interval(env: Environment) -> timedelta:
    """The environment's pull interval; in tests each interval unit may count as N seconds."""
    per_unit = _conf("SYNC_TEST_SECONDS_PER_UNIT", 0)
    if per_unit:
        return timedelta(seconds=env.settings.pull_interval * per_unit)
    return env.settings.pull_interval_delta


# --- Scheduling (django-q2) ---------------------------------------------------------------------
#
# One django-q2 Schedule per running environment fires a tick every minute (the scheduler's own
# resolution). The tick enqueues one task per (sync user, kind) that is due under the interval as
# it is configured *now*: so changing the interval while running takes effect at the next tick,
# without a restart, whatever the unit. Tasks take ids; any cluster on any machine may run them.

HEARTBEAT_MINUTES = 1
PRUNE_SCHEDULE = "synchronizer:prune"
AUTOMATIC = (Trigger.SCHEDULE, Trigger.START, Trigger.PUSH)


def schedule_name(env: Environment | int) -> str:
    return f"synchronizer:{env if isinstance(env, int) else env.pk}"


def _broker():
    from django_q.brokers import get_broker

    return get_broker()


def every_minutes(name: str, func: str, env: Environment, minutes: int):
    """A django-q2 schedule named `name` running the task `func(env.pk)` every `minutes`, the
    first time `minutes` from now."""
    from django_q.models import Schedule

    return Schedule.objects.create(
        name=name,
        func=func,
        args=repr((env.pk,)),
        schedule_type=Schedule.MINUTES,
        minutes=minutes,
        repeats=-1,
        next_run=timezone.now() + timedelta(minutes=minutes),
    )


def _schedule(env: Environment) -> None:
    from django_q.models import Schedule

    _unschedule(env)
    tick_schedule = every_minutes(schedule_name(env), "synccore.tasks.tick", env, HEARTBEAT_MINUTES)
    if not Schedule.objects.filter(name=PRUNE_SCHEDULE).exists():
        Schedule.objects.create(
            name=PRUNE_SCHEDULE,
            func="synccore.tasks.prune",
            schedule_type=Schedule.DAILY,
            repeats=-1,
            next_run=timezone.now() + timedelta(hours=1),
        )
    broker = _broker()
    # The first passes at once (S1), not a minute later. Kind by kind, not user by user: a
    # user's two passes share its lease, so side by side in the queue two workers would take
    # them together and one would have to defer its pass to the end of the queue.
    users = [user for user in _users(env, None) if not _skip_reason(user, Trigger.START)]
    for kind in KINDS:
        for user in users:
            if _runnable_kind(user, kind):
                _enqueue_pass(user, kind, full=False, trigger=Trigger.START, broker=broker)
    if _test_tick_s():
        _async("synccore.tasks.tick", env.pk, tick_schedule.pk, broker=broker)
    from synccore import graph_push

    graph_push.schedule(env)  # Graph change-notification subscriptions (push over Graph)


def _unschedule(env: Environment) -> None:
    from django_q.models import Schedule

    from synccore import graph_push

    Schedule.objects.filter(name=schedule_name(env)).delete()
    graph_push.unschedule(env)


def _async(func: str, *args: Any, broker=None) -> None:
    from django_q.tasks import async_task

    async_task(func, *args, broker=broker or _broker())


def _enqueued_field(kind: str) -> str:
    return "contacts_enqueued_at" if kind == SyncKind.CONTACTS else "calendar_enqueued_at"


def _runnable_kind(user: SyncUser, kind: str) -> bool:
    return kind_enabled(user, kind)


def _skip_reason(user: SyncUser, trigger: str) -> str:
    """S3: automatic passes leave unhealthy users alone and wait out a user's back-off."""
    if trigger not in AUTOMATIC:
        return ""  # an administrator asked for this pass explicitly
    if user.health == Health.UNHEALTHY:
        return "unhealthy"
    if user.backoff_until and user.backoff_until > timezone.now():
        return "backing off"
    return ""


def _enqueue_pass(
    user: SyncUser, kind: SyncKind | str, *, full: bool, trigger: str = Trigger.MANUAL, broker=None
) -> None:
    leases.ensure(user.pk)
    UserLease.objects.filter(sync_user_id=user.pk).update(**{_enqueued_field(kind): timezone.now()})
    _async("synccore.tasks.run_pass", user.pk, str(kind), str(trigger), full, broker=broker)


def tick(environment_id: int, chain_schedule_id: int | None = None) -> int:
    """One scheduler tick: enqueue a pass for each (user, kind) due now. Returns how many."""
    env = Environment.objects.select_related("settings").filter(pk=environment_id).first()
    if env is None or env.state != SynchronizerState.RUNNING:
        return 0
    now = timezone.now()
    every = pull_interval(env)
    # Ticks drift by a few seconds; half a tick of slack keeps a 15-minute interval at 15 minutes.
    slack = timedelta(seconds=(_test_tick_s() or HEARTBEAT_MINUTES * 60) / 2)
    broker = _broker()
    enqueued = 0
    users = [user for user in _users(env, None) if not _skip_reason(user, Trigger.SCHEDULE)]
    for user in users:
        leases.ensure(user.pk)
    for kind in KINDS:  # kind by kind: see _schedule
        for user in users:
            if not _runnable_kind(user, kind):
                continue
            name = _enqueued_field(kind)
            # Claim the slot with a conditional UPDATE: two ticks racing enqueue it once.
            claimed = (
                UserLease.objects.filter(sync_user_id=user.pk)
                .filter(Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__lte": now + slack - every}))
                .update(**{name: now})
            )
            if claimed:
                _async("synccore.tasks.run_pass", user.pk, kind.value, Trigger.SCHEDULE.value, False, broker=broker)
                enqueued += 1
    if chain_schedule_id and _test_tick_s():
        _chain_tick(env, chain_schedule_id)
    return enqueued


def _chain_tick(env: Environment, schedule_id: int) -> None:
    """Test only: the next tick a few seconds later, for as long as this start's schedule lives."""
    from django_q.models import Schedule

    time.sleep(_test_tick_s())
    if Schedule.objects.filter(pk=schedule_id).exists():
        _async("synccore.tasks.tick", env.pk, schedule_id)


# --- Passes -------------------------------------------------------------------------------------


def _halted(state: str, trigger: str) -> bool:
    """No pass while stopping (S1); automatic passes (start, schedule, push) only while running;
    an administrator's sync-now also while stopped."""
    return state == SynchronizerState.STOPPING or (trigger in AUTOMATIC and state != SynchronizerState.RUNNING)


def run_pass(user_id: int, kind: str, trigger: str = Trigger.SCHEDULE, full: bool = False) -> str:
    """Run one pass for one mailbox under its lease. Returns what happened, for the task result."""
    from synccore.sync.runs import PassAborted

    user = SyncUser.objects.select_related("environment__settings").filter(pk=user_id).first()
    if user is None or not user.active:
        return "skipped: no such active user"
    env = user.environment
    if _halted(env.state, trigger):
        return f"skipped: the synchronizer is {env.state}"
    if not _runnable_kind(user, kind):
        return "skipped: kind disabled"
    reason = _skip_reason(user, trigger)
    if reason:
        return f"skipped: {reason}"
    holder = leases.new_holder()
    ttl = lease_ttl_s()
    if not leases.acquire(user.pk, holder, ttl):
        # Busy: ask the holder to run this kind again when done, rather than dropping the change.
        leases.request_rerun(user.pk, kind, trigger)
        if not leases.acquire(user.pk, holder, ttl):  # the holder may have finished meanwhile
            return "deferred: another worker holds this mailbox"
        leases.take_reruns_of(user.pk, kind)
    try:
        # Read again under the lease: a stop that came after the first look must not be followed
        # by a pass that starts now (S1), and a pass that saw "running" here is one stop waits out
        # at its next item boundary.
        state = Environment.objects.filter(pk=env.pk).values_list("state", flat=True).first()
        if state is None or _halted(state, trigger):
            return f"skipped: the synchronizer is {state}"
        leases.close_orphaned_runs(user.pk)
        began_running = state == SynchronizerState.RUNNING

        def should_stop() -> bool:
            # Before each write batch: keep the lease, or stop before writing without it.
            if not leases.renew(user.pk, holder, ttl):
                raise PassAborted("The lease on this mailbox was lost (taken over after expiry).")
            state = Environment.objects.filter(pk=env.pk).values_list("state", flat=True).first()
            return state == SynchronizerState.STOPPING or (
                began_running and state != SynchronizerState.RUNNING
            )

        from synccore.sync.runs import PassContext

        ctx = PassContext(trigger=trigger, full=full, should_stop=should_stop)
        run = pass_runner(kind)(user.pk, ctx)
        SyncRun.objects.filter(pk=run.pk).update(worker=leases.worker_name())
        result = f"{run.outcome}"
    finally:
        leases.release(user.pk, holder)
    for rerun_kind, rerun_trigger in leases.take_reruns(user.pk):
        _async("synccore.tasks.run_pass", user.pk, rerun_kind, rerun_trigger, False)
    return result


# --- Administrator changes to settings and sync users ------------------------------------------


def configuration_changed(environment_id: int) -> None:
    """Settings or sync users of an environment were saved (console, API, admin): what runs
    follows at once. Ticks read the pull interval as configured at each tick and the EWS push
    listener re-reads its streams at every poll; Graph subscriptions are maintained now when
    they no longer match what is wanted (`graph_push.follow`)."""
    from synccore import graph_push

    graph_push.follow(environment_id)


def set_active(user_id: int, active: bool) -> None:
    """(De)activate a sync user. Deactivating stops its synchronization and leaves its mailbox as
    it is (C7)."""
    user = SyncUser.objects.get(pk=user_id)
    SyncUser.objects.filter(pk=user_id).update(active=active, updated_at=timezone.now())
    configuration_changed(user.environment_id)


def delete_user(user_id: int) -> None:
    """Delete a sync user (its links and runs go with it) and its push subscriptions."""
    from synccore import graph_push

    user = SyncUser.objects.get(pk=user_id)
    with transaction.atomic():
        graph_push.release(user)
        user.delete()


# --- Administrator actions on one user (S3) ----------------------------------------------------


def reenable(user_id: int) -> None:
    """An unhealthy user is synchronized again; with the synchronizer running, at once."""
    SyncUser.objects.filter(pk=user_id).update(
        health=Health.HEALTHY, backoff_until=None, updated_at=timezone.now()
    )
    _enqueue_now(user_id)


def confirm_deletions(user_id: int) -> None:
    """The administrator allows the next pass to delete beyond the safety limit; it runs now."""
    contacts.allow_deletions_beyond_limit(user_id)
    _enqueue_now(user_id)


def _enqueue_now(user_id: int) -> None:
    user = SyncUser.objects.select_related("environment__settings").get(pk=user_id)
    if user.environment.state != SynchronizerState.RUNNING or not user.active:
        return
    broker = _broker()
    for kind in KINDS:
        if _runnable_kind(user, kind):
            _enqueue_pass(user, kind, full=False, trigger=Trigger.MANUAL, broker=broker)


# --- Status helpers -----------------------------------------------------------------------------


def _queue_depth() -> int:
    try:
        return int(_broker().queue_size() or 0)
    except Exception:  # the status page must render even when the broker is down
        log.warning("could not read the queue depth", exc_info=True)
        return -1


def _workers() -> list[dict[str, Any]]:
    """Clusters seen alive in the last minute, from django-q2's statistics in the shared cache."""
    from django_q.status import Stat

    try:
        stats = Stat.get_all()
    except Exception:
        log.warning("could not read the cluster statistics", exc_info=True)
        return []
    alive_since = timezone.now() - timedelta(minutes=1)
    return [
        {
            "cluster": str(stat.cluster_id),
            "host": stat.host,
            "pid": stat.sentinel,
            "status": str(stat.status),
            "workers": len(stat.workers),
            "seen_at": _iso(stat.timestamp),
        }
        for stat in sorted(stats, key=lambda s: (s.host, str(s.cluster_id)))
        if stat.timestamp and stat.timestamp >= alive_since
    ]


# --- Housekeeping -------------------------------------------------------------------------------


def prune(now: datetime | None = None) -> dict[str, int]:
    """Delete run rows, task results, audit entries and unlinked tombstones older than
    SYNC_RETENTION_DAYS."""
    from django.apps import apps
    from django_q.models import Task

    cutoff = (now or timezone.now()) - timedelta(days=retention_days())
    removed = {
        "runs": SyncRun.objects.filter(finished_at__lt=cutoff).delete()[0],
        "tasks": Task.objects.filter(stopped__lt=cutoff).delete()[0],
        "tombstones": purge_tombstones_older_than(cutoff),
    }
    # The audit log belongs to the console; prune it without importing the console.
    if apps.is_installed("syncadmin"):
        try:
            audit = apps.get_model("syncadmin", "AuditEntry")
        except LookupError:
            audit = None
        if audit is not None:
            removed["audit"] = audit.objects.filter(at__lt=cutoff).delete()[0]
    return removed


# --- Push (K14) ---------------------------------------------------------------------------------


def notify_crm_change(environment_id: int, activity_ids: list[int]) -> None:
    """A CRM-side change to synchronized activities (K14).

    With push on and the synchronizer running, enqueues a calendar pass for each sync user the
    activities concern, once the transaction commits (a worker must see the committed change);
    otherwise the next pull pass picks the change up.
    """
    transaction.on_commit(lambda: _push_crm_change(environment_id, list(activity_ids)))


def _push_crm_change(environment_id: int, activity_ids: list[int]) -> None:
    env = Environment.objects.select_related("settings").filter(pk=environment_id).first()
    if env is None or env.state != SynchronizerState.RUNNING or not env.settings.push_enabled:
        return
    for user in _concerned_users(env, activity_ids):
        push_calendar(user.pk)


def _concerned_users(env: Environment, activity_ids: list[int]) -> list[SyncUser]:
    rows = Activity.all_objects.filter(pk__in=activity_ids).values("organizer_id", "organizer_email")
    employees = {row["organizer_id"] for row in rows if row["organizer_id"]}
    emails = {row["organizer_email"].lower() for row in rows if row["organizer_email"]}
    for row in Attendee.objects.filter(activity_id__in=activity_ids).values("employee_id", "email"):
        if row["employee_id"]:
            employees.add(row["employee_id"])
        if row["email"]:
            emails.add(row["email"].lower())
    users = [
        user
        for user in _users(env, None)
        if user.employee_id in employees or user.mailbox_email.lower() in emails
    ]
    # An activity whose people we cannot tell (deleted with its attendees): every calendar user.
    return users or _users(env, None)


def push_calendar(user_id: int) -> bool:
    """A push notification for one mailbox: enqueue its calendar pass now. False if not wanted."""
    return push_pass(user_id, SyncKind.CALENDAR)


def push_pass(user_id: int, kind: str) -> bool:
    """A push notification (EWS stream or Graph webhook) or a catch-up for one mailbox: enqueue
    a pass of that kind now. False if not wanted (synchronizer not running, kind off).

    A pass that finds the mailbox's lease taken asks its holder for a re-run (`run_pass`), so a
    notification that arrives during a pass is never dropped."""
    user = SyncUser.objects.select_related("environment__settings").filter(pk=user_id).first()
    if user is None or not user.active:
        return False
    env = user.environment
    if env.state != SynchronizerState.RUNNING or not _runnable_kind(user, kind):
        return False
    _enqueue_pass(user, kind, full=False, trigger=Trigger.PUSH)
    return True
