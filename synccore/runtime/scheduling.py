"""The schedules of a running environment (django-q2), and the tick they fire.

One django-q2 Schedule per running environment fires a tick every minute (the scheduler's own
resolution). The tick enqueues the passes of each (sync user, kind) that is due under the interval
as it is configured *now*: so changing the interval while running takes effect at the next tick,
without a restart, whatever the unit. A task carries up to PASS_THREADS mailboxes of one kind,
whose passes its worker runs at once (`passes.run_passes`).
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from synccore.models import Environment, SynchronizerState, Trigger, UserLease
from synccore.runtime import alerts, config, leases, passes, push, queue

TICK = "synccore.tasks.tick"
PRUNE = "synccore.tasks.prune"
DRIFT_AUDIT = "synccore.tasks.audit_environment"
AUDIT_MAILBOX = "synccore.tasks.audit_mailbox"


def drift_audit_schedule_name(env: Environment | int) -> str:
    return f"{queue.tick_schedule_name(env)}:drift-audit"


def schedule_environment(env: Environment) -> None:
    """A start: the tick schedule, the daily prune, the first passes now, and push."""
    unschedule_environment(env)
    tick_schedule = queue.every_minutes(queue.tick_schedule_name(env), TICK, env, queue.HEARTBEAT_MINUTES)
    queue.daily_once(queue.PRUNE_SCHEDULE, PRUNE)
    audit_hours = config.drift_audit_hours()
    if audit_hours > 0:
        queue.every_minutes(drift_audit_schedule_name(env), DRIFT_AUDIT, env, max(1, round(audit_hours * 60)))
    broker = queue.current_broker()
    # The first passes at once (S1), not a minute later. Kind by kind, not user by user: a
    # user's two passes share its lease, so side by side in the queue two workers would take
    # them together and one would have to defer its pass to the end of the queue.
    users = [user for user in passes.active_users(env) if not passes.skip_reason(user, Trigger.START)]
    for kind in passes.KINDS:
        due = [user for user in users if passes.runnable_kind(user, kind)]
        passes.enqueue_passes(due, kind, full=False, trigger=Trigger.START, broker=broker)
    if config.tick_seconds_in_tests():
        queue.enqueue(TICK, env.pk, tick_schedule.pk, broker=broker)
    push.schedule(env)


def unschedule_environment(env: Environment) -> None:
    """Nothing ticks for this environment any more (its push maintenance included)."""
    queue.delete_schedule(queue.tick_schedule_name(env))
    queue.delete_schedule(drift_audit_schedule_name(env))
    push.unschedule(env)


def tick(environment_id: int, chain_schedule_id: int | None = None) -> int:
    """One scheduler tick: enqueue a pass for each (user, kind) due now. Returns how many."""
    env = Environment.objects.select_related("settings").filter(pk=environment_id).first()
    if env is None or env.state != SynchronizerState.RUNNING:
        return 0
    now = timezone.now()
    every = config.pull_interval(env)
    # Ticks drift by a few seconds; half a tick of slack keeps a 15-minute interval at 15 minutes.
    slack = timedelta(seconds=(config.tick_seconds_in_tests() or queue.HEARTBEAT_MINUTES * 60) / 2)
    broker = queue.current_broker()
    enqueued = 0
    users = [user for user in passes.active_users(env) if not passes.skip_reason(user, Trigger.SCHEDULE)]
    for user in users:
        leases.ensure(user.pk)
    for kind in passes.KINDS:  # kind by kind: see schedule_environment
        due = []
        for user in users:
            if not passes.runnable_kind(user, kind):
                continue
            name = passes.enqueued_field(kind)
            # Claim the slot with a conditional UPDATE: two ticks racing enqueue it once.
            claimed = (
                UserLease.objects.filter(sync_user_id=user.pk)
                .filter(Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__lte": now + slack - every}))
                .update(**{name: now})
            )
            if claimed:
                due.append(user)
        # In tasks of PASS_THREADS mailboxes, each task's passes run at once on one worker.
        passes.enqueue_passes(due, kind, full=False, trigger=Trigger.SCHEDULE, broker=broker, mark=False)
        enqueued += len(due)
    alerts.observe_quietly(env.pk)  # O6: push lost or back, a secret about to expire, …
    if chain_schedule_id and config.tick_seconds_in_tests():
        _chain_tick(env, chain_schedule_id)
    return enqueued


def audit_environment(environment_id: int) -> int:
    """The periodic drift audit (issue 16, finding 9): one audit task per active mailbox of a
    running environment, each under the mailbox's lease on a worker. Returns how many."""
    env = Environment.objects.filter(pk=environment_id).first()
    if env is None or env.state != SynchronizerState.RUNNING:
        return 0
    users = [user for user in passes.active_users(env) if not passes.skip_reason(user, Trigger.SCHEDULE)]
    broker = queue.current_broker() if users else None
    for user in users:
        queue.enqueue(AUDIT_MAILBOX, user.pk, broker=broker)
    return len(users)


def _chain_tick(env: Environment, schedule_id: int) -> None:
    """Test only: the next tick a few seconds later, for as long as this start's schedule lives."""
    time.sleep(config.tick_seconds_in_tests())
    if queue.schedule_exists(schedule_id):
        queue.enqueue(TICK, env.pk, schedule_id)
