"""One pass for one mailbox, on a worker: enqueued, then run under the mailbox's lease.

The skip rules live here: no pass while stopping (S1), automatic passes only while running and
never for an unhealthy or backing-off user (S3). A pass that finds the lease taken asks its
holder for a re-run, so a push notification arriving during a pass is never dropped (K14).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import connections
from django.utils import timezone

from synccore.mailbox.base import MailboxError
from synccore.models import (
    Environment,
    Health,
    SynchronizerState,
    SyncKind,
    SyncRun,
    SyncUser,
    Trigger,
    UserLease,
)
from synccore.runtime import config, leases, queue, slots
from synccore.sync import drift
from synccore.sync.runs import PassAborted, PassContext
from synccore.sync.service import kind_enabled, pass_runner

log = logging.getLogger(__name__)

KINDS = (SyncKind.CONTACTS, SyncKind.CALENDAR, SyncKind.TASKS, SyncKind.EMAIL)
AUTOMATIC = (Trigger.SCHEDULE, Trigger.START, Trigger.PUSH)
RUN_PASS = "synccore.tasks.run_pass"
# How often a running pass renews its lease and looks for a stop (seconds): well inside any lease
# TTL, and short beside how long people wait for a stop.
STOP_LOOK_EVERY_S = 0.5
RUN_PASSES = "synccore.tasks.run_passes"


def active_users(env: Environment) -> list[SyncUser]:
    return list(SyncUser.objects.filter(environment=env, active=True).select_related("environment__settings"))


def enqueued_field(kind: str) -> str:
    """The lease row's field that says when this kind's pass was last enqueued."""
    return f"{SyncKind(kind).value}_enqueued_at"


def runnable_kind(user: SyncUser, kind: str) -> bool:
    return kind_enabled(user, kind)


def skip_reason(user: SyncUser, trigger: str) -> str:
    """S3: automatic passes leave unhealthy users alone and wait out a user's back-off."""
    if trigger not in AUTOMATIC:
        return ""  # an administrator asked for this pass explicitly
    if user.health == Health.UNHEALTHY:
        return "unhealthy"
    if user.backoff_until and user.backoff_until > timezone.now():
        return "backing off"
    return ""


def halted(state: str, trigger: str) -> bool:
    """No pass while stopping (S1); automatic passes (start, schedule, push) only while running;
    an administrator's sync-now also while stopped."""
    return state == SynchronizerState.STOPPING or (
        trigger in AUTOMATIC and state != SynchronizerState.RUNNING
    )


def enqueue_pass(
    user: SyncUser, kind: SyncKind | str, *, full: bool, trigger: str = Trigger.MANUAL, broker: Any = None
) -> None:
    leases.ensure(user.pk)
    UserLease.objects.filter(sync_user_id=user.pk).update(**{enqueued_field(kind): timezone.now()})
    queue.enqueue(RUN_PASS, user.pk, str(kind), str(trigger), full, broker=broker)


def enqueue_passes(
    users: list[SyncUser], kind: SyncKind | str, *, full: bool, trigger: str, broker: Any = None, mark: bool = True
) -> None:
    """The passes of one kind for several mailboxes, in tasks of PASS_THREADS mailboxes each: a
    worker runs a task's passes at once (`run_passes`). ``mark``: note them enqueued now (a tick
    has claimed them already)."""
    if not users:
        return
    if mark:
        for user in users:
            leases.ensure(user.pk)
        UserLease.objects.filter(sync_user_id__in=[u.pk for u in users]).update(**{enqueued_field(kind): timezone.now()})
    size = config.pass_threads()
    for start in range(0, len(users), size):
        batch = [user.pk for user in users[start : start + size]]
        if len(batch) == 1:
            queue.enqueue(RUN_PASS, batch[0], str(kind), str(trigger), full, broker=broker)
        else:
            queue.enqueue(RUN_PASSES, batch, str(kind), str(trigger), full, broker=broker)


def run_pass(user_id: int, kind: str, trigger: str = Trigger.SCHEDULE, full: bool = False) -> str:
    """Run one pass for one mailbox under its lease. Returns what happened, for the task result."""
    user = SyncUser.objects.select_related("environment__settings").filter(pk=user_id).first()
    if user is None or not user.active:
        return "skipped: no such active user"
    env = user.environment
    if halted(env.state, trigger):
        return f"skipped: the synchronizer is {env.state}"
    if not runnable_kind(user, kind):
        return "skipped: kind disabled"
    reason = skip_reason(user, trigger)
    if reason:
        return f"skipped: {reason}"
    holder = leases.new_holder()
    ttl = config.lease_ttl_s()
    account = slots.account_key(user)
    if account and not slots.wait_for(account, holder, config.ews_concurrent_passes(), ttl, config.slot_wait_s()):
        # Every connection of the service account busy for long: queued again, never dropped.
        queue.enqueue(RUN_PASS, user.pk, str(kind), str(trigger), full)
        return "deferred: every connection of the service account is in use"
    try:
        result, held = _run_leased(user, env, kind, trigger, full, holder, ttl, account)
    finally:
        if account:
            slots.release(account, holder)
    if not held:
        return result
    for rerun_kind, rerun_trigger in leases.take_reruns(user.pk):
        queue.enqueue(RUN_PASS, user.pk, rerun_kind, rerun_trigger, False)
    return result


def _run_leased(
    user: SyncUser, env: Environment, kind: str, trigger: str, full: bool, holder: str, ttl: float, account: str
) -> tuple[str, bool]:
    """The pass under the mailbox's lease: what happened, and whether it ran (then re-runs asked
    for meanwhile are handed out)."""
    if not leases.acquire(user.pk, holder, ttl):
        # Busy: ask the holder to run this kind again when done, rather than dropping the change.
        leases.request_rerun(user.pk, kind, trigger)
        if not leases.acquire(user.pk, holder, ttl):  # the holder may have finished meanwhile
            return "deferred: another worker holds this mailbox", False
        leases.take_reruns_of(user.pk, kind)
    try:
        # Read again under the lease: a stop that came after the first look must not be followed
        # by a pass that starts now (S1), and a pass that saw "running" here is one stop waits out
        # at its next item boundary.
        state = Environment.objects.filter(pk=env.pk).values_list("state", flat=True).first()
        if state is None or halted(state, trigger):
            return f"skipped: the synchronizer is {state}", False
        leases.close_orphaned_runs(user.pk)
        began_running = state == SynchronizerState.RUNNING

        last_look = [float("-inf")]

        def should_stop() -> bool:
            # Engines ask at every item boundary; the database is asked at most every
            # STOP_LOOK_EVERY_S (three queries a look: lease, slot, state), so a pass of 200
            # linked items does not cost 600 queries, and a stop still takes effect within it.
            now = time.monotonic()
            if now - last_look[0] < STOP_LOOK_EVERY_S:
                return False
            last_look[0] = now
            # Keep the lease, or stop before writing without it.
            if not leases.renew(user.pk, holder, ttl):
                raise PassAborted("The lease on this mailbox was lost (taken over after expiry).")
            if account:
                slots.renew(account, holder, ttl)
            state = Environment.objects.filter(pk=env.pk).values_list("state", flat=True).first()
            return state == SynchronizerState.STOPPING or (
                began_running and state != SynchronizerState.RUNNING
            )

        ctx = PassContext(trigger=trigger, full=full, should_stop=should_stop)
        run = pass_runner(kind)(user.pk, ctx)
        SyncRun.objects.filter(pk=run.pk).update(worker=leases.worker_name())
        return f"{run.outcome}", True
    finally:
        leases.release(user.pk, holder)


def run_passes(
    user_ids: list[int], kind: str, trigger: str = Trigger.SCHEDULE, full: bool = False, *, threads: int | None = None
) -> list[str]:
    """Several mailboxes' passes of one kind at once, each as `run_pass` runs it (its lease, its
    service account's slot), on up to `threads` threads (default: the runtime's PASS_THREADS).
    A pass that raises is logged and reported in its place; the others run on. Returns what
    happened to each, in the order of `user_ids`."""
    threads = min(threads or config.pass_threads(), len(user_ids))
    if threads <= 1:
        return [_run_guarded(user_id, kind, trigger, full) for user_id in user_ids]
    results: list[str] = [""] * len(user_ids)
    todo = list(enumerate(user_ids))
    todo_lock = threading.Lock()

    def work() -> None:
        try:
            while True:
                with todo_lock:
                    if not todo:
                        return
                    index, user_id = todo.pop(0)
                results[index] = _run_guarded(user_id, kind, trigger, full)
        finally:
            # Django opens one connection per thread: this thread's must not outlive it.
            connections.close_all()

    pool = [threading.Thread(target=work, name=f"pass-{kind}-{n}") for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return results


def _run_guarded(user_id: int, kind: str, trigger: str, full: bool) -> str:
    try:
        return run_pass(user_id, kind, trigger, full)
    except Exception as exc:  # one pass's failure never stops the passes beside it
        log.exception("the %s pass of sync user %s failed", kind, user_id)
        return f"failed: {exc}"


def run_foreground(user: SyncUser, kind: str, ctx: PassContext, *, wait_s: float | None = None) -> SyncRun | None:
    """A pass in this process (``manage.py sync_now``) under the mailbox's lease, as a worker's
    pass runs: it waits up to ``wait_s`` for another pass holding the mailbox to finish, then
    gives up (None). Re-runs asked for while it held the lease go to the workers."""
    holder, ttl = leases.new_holder(), config.lease_ttl_s()
    deadline = time.monotonic() + (config.foreground_wait_s() if wait_s is None else wait_s)
    while not leases.acquire(user.pk, holder, ttl):
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)
    try:
        leases.close_orphaned_runs(user.pk)
        asked_to_stop = ctx.should_stop

        def should_stop() -> bool:
            if not leases.renew(user.pk, holder, ttl):
                raise PassAborted("The lease on this mailbox was lost (taken over after expiry).")
            return asked_to_stop()

        ctx.should_stop = should_stop
        run = pass_runner(kind)(user.pk, ctx)
        SyncRun.objects.filter(pk=run.pk).update(worker=leases.worker_name())
    finally:
        leases.release(user.pk, holder)
    for rerun_kind, rerun_trigger in leases.take_reruns(user.pk):
        queue.enqueue(RUN_PASS, user.pk, rerun_kind, rerun_trigger, False)
    return run


def audit_mailbox(user_id: int) -> str:
    """The drift audit of one mailbox (issue 16, finding 9) under its lease, as a pass: the
    linked items Exchange lost without reporting a deletion show in "Needs attention", and a pass
    of their kind is enqueued at once to write them again. Returns what happened."""
    user = SyncUser.objects.select_related("environment__settings").filter(pk=user_id).first()
    if user is None or not user.active:
        return "skipped: no such active user"
    if user.environment.state != SynchronizerState.RUNNING:
        return f"skipped: the synchronizer is {user.environment.state}"
    reason = skip_reason(user, Trigger.SCHEDULE)
    if reason:
        return f"skipped: {reason}"
    holder = leases.new_holder()
    if not leases.acquire(user.pk, holder, config.lease_ttl_s()):
        return "deferred: another worker holds this mailbox"  # audited next time
    try:
        found = drift.audit_mailbox(user)
    except MailboxError as exc:
        return f"not audited: {exc}"  # the passes report the mailbox's trouble
    finally:
        leases.release(user.pk, holder)
    for kind in found:
        if kind.missing:
            log.warning(
                "drift audit of %s: %d of %d synchronized %s items are missing from the mailbox; "
                "writing them again",
                user.mailbox_email,
                len(kind.missing),
                kind.checked,
                kind.kind,
            )
            enqueue_pass(user, kind.kind, full=False, trigger=Trigger.SCHEDULE)
    return "audited: " + ", ".join(f"{k.kind} {len(k.missing)} missing of {k.checked}" for k in found)


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
    if env.state != SynchronizerState.RUNNING or not runnable_kind(user, kind):
        return False
    enqueue_pass(user, kind, full=False, trigger=Trigger.PUSH)
    return True
