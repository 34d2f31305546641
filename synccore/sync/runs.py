"""Run records and user health: what every pass does before and after its work (S2, S3, O1)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError
from django.utils import timezone

from synccore.mailbox.base import MailboxBackend, MailboxError, RemoteRef
from synccore.models import Health, ItemLink, Outcome, SyncKind, SyncRun, SyncUser
from synccore.sync import relink
from synccore.sync.actions import Action, ItemKey
from synccore.sync.connection import open_user_backend, server_name
from synccore.sync.explain import Recorder
from synccore.sync.loops import LoopDetector
from synccore.sync.readable import Readable, explain

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 60.0
LAST_PASS_FIELDS = {
    SyncKind.CONTACTS: "last_contact_pass_at",
    SyncKind.CALENDAR: "last_calendar_pass_at",
    SyncKind.TASKS: "last_task_pass_at",
    SyncKind.EMAIL: "last_email_pass_at",
}
BACKOFF_MAX_S = 3600.0


class PassAborted(Exception):
    """The pass stopped before its end (the synchronizer is stopping, or the lease was lost)."""


@dataclass
class PassContext:
    """What a pass is told by whoever runs it."""

    trigger: str = "manual"
    full: bool = False
    should_stop: Callable[[], bool] = field(default=lambda: False)
    on_progress: Callable[[int, int], None] | None = None
    # Told every decision the pass takes, before it is written (a preview collects them, P1).
    on_action: Callable[[Action], None] | None = None
    # Whether the pass's decisions are kept for "Explain" (P2); a preview's are not.
    record: bool = True
    recorder: Recorder | None = field(default=None, repr=False)
    # Why the pass held something back when it is not the safety limit (P4), for the user's state.
    held_reason: Readable | None = None
    # The sides ("exchange", "crm") whose deletions the safety limit held back in this pass: a pass
    # held by the meeting message limit alone (P4) holds none, whatever the run's outcome says.
    held_deletions: set[str] = field(default_factory=set)

    def decided(self, action: Action) -> bool:
        """Tell a decision before it is written; False when it must not be written (held back)."""
        allowed = True
        if self.recorder is not None:
            action, allowed = self.recorder.decide(action)
        if self.on_action is not None:
            self.on_action(action)
        return allowed

    def carried_out(self, item: ItemKey, kinds: Collection[str] | None = None) -> None:
        """The decisions taken about ``item`` (of ``kinds``) were written: recorded as done even
        when the pass fails later (P2)."""
        if self.recorder is not None:
            self.recorder.carried_out(item, kinds)

    def checkpoint(self) -> None:
        """Called between write batches: an item boundary where a pass may stop cleanly."""
        if self.should_stop():
            raise PassAborted("The synchronizer is stopping.")


def start_run(user: SyncUser, kind: SyncKind, ctx: PassContext) -> SyncRun:
    return SyncRun.objects.create(
        environment_id=user.environment_id, sync_user=user, kind=kind, trigger=ctx.trigger, full=ctx.full
    )


def finish_run(
    run: SyncRun, user: SyncUser, *, requests: int, held: bool = False, held_reason: Readable | None = None
) -> SyncRun:
    run.finished_at = timezone.now()
    run.requests = requests
    if held:
        run.outcome = Outcome.HELD
    else:
        run.outcome = Outcome.PARTIAL if (run.failed or run.skipped) else Outcome.SUCCESS
    run.save()
    last_pass_field = LAST_PASS_FIELDS.get(run.kind, "last_calendar_pass_at")
    setattr(user, last_pass_field, run.finished_at)
    if held:
        fields = set_kind_state(user, run.kind, HELD, at=run.finished_at, readable=held_reason or HELD_REASON)
    else:
        fields = set_kind_state(user, run.kind, HEALTHY, at=run.finished_at)
    user.save(update_fields=[last_pass_field, "updated_at", *fields])
    return run


def fail_run(run: SyncRun, user: SyncUser, error: Exception, *, requests: int) -> SyncRun:
    """A whole pass failed: record why and set the user's health for this kind (S3, O1, O4)."""
    run.finished_at = timezone.now()
    run.requests = requests
    run.error = str(error)
    run.outcome = Outcome.ABORTED if isinstance(error, PassAborted) else Outcome.FAILED
    if isinstance(error, DatabaseError):
        # Our own database, not the mailbox: the run says so; the mailbox's state is not touched.
        run.error = f"A database error stopped this pass (the mailbox is not at fault): {error}"
    run.save()
    if isinstance(error, PassAborted | DatabaseError):
        return run
    readable = explain(error, mailbox=user.mailbox_email, server=server_name(user.environment.settings, user.effective_backend))
    user.last_error_at = run.finished_at
    if isinstance(error, MailboxError) and not error.permanent:
        until = run.finished_at + timedelta(seconds=_backoff_seconds(user, error))
        fields = set_kind_state(user, run.kind, BACKING_OFF, at=run.finished_at, readable=readable)
        user.backoff_until = max(until, user.backoff_until or until)
    else:
        fields = set_kind_state(user, run.kind, FAILING, at=run.finished_at, readable=readable)
    user.save(update_fields=["last_error_at", "updated_at", *fields])
    return run


# --- Health per kind (O1) ----------------------------------------------------------------------
#
# Each kind's state is kept on its own in ``SyncUser.kind_health`` ({kind: {"state", "since",
# "reason", "code", "detail"}}); a kind without an entry has not been tested yet. The user's
# ``health`` (and ``last_error``) is the worst of its kinds', so a pass of one kind never clears
# another kind's state, and a cleared error disappears.

HEALTHY, BACKING_OFF, HELD, FAILING = "healthy", "backing_off", "held", "failing"
_USER_HEALTH = {
    HEALTHY: Health.HEALTHY,
    BACKING_OFF: Health.BACKING_OFF,
    HELD: Health.HELD,
    FAILING: Health.UNHEALTHY,
}
_SEVERITY = [Health.HEALTHY, Health.BACKING_OFF, Health.HELD, Health.UNHEALTHY]
HELD_REASON = Readable(
    "held",
    "The safety limit held back deletions: this pass would delete more than the limit allows. "
    "Confirm the deletions if they are intended, or change the filter.",
)


def set_kind_state(
    user: SyncUser, kind: str, state: str, *, at: datetime, readable: Readable | None = None
) -> list[str]:
    """Record one kind's state and derive the user's health from all its kinds; the fields to save."""
    entries = dict(user.kind_health or {})
    before = entries.get(str(kind), {})
    entry: dict[str, str] = {
        "state": state,
        "since": before["since"] if before.get("state") == state and "since" in before else at.isoformat(),
    }
    if readable is not None:
        entry |= {"reason": readable.sentence, "code": readable.code, "detail": readable.detail}
    entries[str(kind)] = entry
    user.kind_health = entries
    return ["kind_health", *derive_user_health(user)]


def clear_kind_states(user: SyncUser, states: tuple[str, ...], *, at: datetime) -> list[str]:
    """An administrator dealt with these states (re-enable, confirm deletions): those kinds count
    as healthy until their next pass says otherwise."""
    entries = dict(user.kind_health or {})
    for kind, entry in entries.items():
        if entry.get("state") in states:
            entries[kind] = {"state": HEALTHY, "since": at.isoformat()}
    user.kind_health = entries
    return ["kind_health", *derive_user_health(user)]


def derive_user_health(user: SyncUser) -> list[str]:
    """The user's health, back-off and last error from its kinds' states (the worst wins)."""
    entries = user.kind_health or {}
    worst_kind, worst = None, Health.HEALTHY
    for kind, entry in entries.items():
        health = _USER_HEALTH.get(entry.get("state", HEALTHY), Health.HEALTHY)
        if _SEVERITY.index(health) > _SEVERITY.index(worst):
            worst_kind, worst = kind, health
    user.health = worst
    if worst_kind is None:
        user.last_error, user.last_error_at = "", None  # a cleared error disappears (O4)
    else:
        user.last_error = entries[worst_kind].get("reason", "")
    if not any(entry.get("state") == BACKING_OFF for entry in entries.values()):
        user.backoff_until = None
    return ["health", "last_error", "last_error_at", "backoff_until"]


def _backoff_seconds(user: SyncUser, error: MailboxError) -> float:
    """Exponential per user, honouring the server's own back-off."""
    failures = (
        SyncRun.objects.filter(sync_user=user, outcome=Outcome.FAILED).order_by("-started_at")[:6].count()
    )
    wait = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, failures - 1))
    return max(wait, error.retry_after or 0)


def token_kept_since(run: SyncRun) -> datetime | None:
    """When the first pass of ``run``'s user and kind after the last one that saved its token
    began (a failed or held pass keeps the old token), or None when the last one saved it."""
    runs = SyncRun.objects.filter(sync_user_id=run.sync_user_id, kind=run.kind).exclude(pk=run.pk)
    saved = runs.filter(outcome__in=[Outcome.SUCCESS, Outcome.PARTIAL]).order_by("-pk").first()
    unsaved = runs.exclude(outcome__in=[Outcome.SUCCESS, Outcome.PARTIAL])
    if saved is not None:
        unsaved = unsaved.filter(pk__gt=saved.pk)
    first = unsaved.order_by("pk").only("started_at").first()
    return first.started_at if first is not None else None


def unconfirmed_links(
    run: SyncRun, folder_id: str, by_remote: Mapping[str, ItemLink], seen: Collection[str]
) -> list[RemoteRef]:
    """The linked items to read again beside a token's changes: those written since a pass that
    kept the old token. An item such a pass linked and the user deleted since was created and
    deleted after that token, which Exchange (and Graph) then never report."""
    since = token_kept_since(run)
    if since is None:
        return []
    return [
        RemoteRef(remote_id, link.remote_change_key, folder_id)
        for remote_id, link in by_remote.items()
        if remote_id not in seen and link.updated_at >= since
    ]


def execute_pass(
    user: SyncUser,
    kind: SyncKind,
    ctx: PassContext,
    backend: MailboxBackend | None,
    work: Callable[[SyncRun, MailboxBackend], bool],
) -> SyncRun:
    """Run one pass's work with its run record; never raises for mailbox trouble (S3).

    ``work`` returns False when the safety limit held deletions back."""
    run = start_run(user, kind, ctx)
    ctx.recorder = Recorder(run, user, kind, gates=[LoopDetector(run, user, kind)])
    own_backend = backend is None
    backend = backend or open_user_backend(user)
    before = backend.requests
    try:
        # A mailbox moved to another backend finds its links again first (H2).
        relink.follow_backend(user, backend)
        allowed = work(run, backend)
    except Exception as exc:  # the pass fails as a whole; the reason is recorded for people
        if not isinstance(exc, MailboxError):
            log.exception("%s pass for %s failed", kind, user.mailbox_email)
        return _recorded(ctx, fail_run(run, user, exc, requests=backend.requests - before))
    finally:
        if own_backend:
            backend.close()
    return _recorded(ctx, finish_run(run, user, requests=backend.requests - before, held=not allowed, held_reason=ctx.held_reason))


def _recorded(ctx: PassContext, run: SyncRun) -> SyncRun:
    """The pass's decisions kept for Explain (P2); a failure to keep them never fails the pass."""
    if ctx.record and ctx.recorder is not None:
        try:
            ctx.recorder.flush(held_deletions=ctx.held_deletions)
        except DatabaseError:
            log.exception("could not record the decisions of run %s", run.pk)
    return run


# --- What the console and the API show (O1, O2) --------------------------------------------------

NEVER_TESTED, INACTIVE = "never_tested", "inactive"
# Worst last: the user's state is its worst kind's.
STATE_ORDER = [INACTIVE, HEALTHY, NEVER_TESTED, BACKING_OFF, HELD, FAILING]
NEEDS_ATTENTION = (BACKING_OFF, HELD, FAILING)
NEVER_TESTED_REASON = "No pass has reached this mailbox yet: Sync now (with the synchronizer running) tests it."


def kind_state(user: SyncUser, kind: str, enabled: bool) -> dict[str, str | None]:
    """One kind's state, since when and why, as the status shows it."""
    if not (user.active and enabled):
        return {"state": INACTIVE, "since": None, "reason": "", "code": "", "detail": ""}
    entry = (user.kind_health or {}).get(str(kind))
    if not entry and user.health != Health.HEALTHY:
        # A health set without its kinds (older rows, the back office): it holds for every kind.
        since = user.last_error_at or user.updated_at
        entry = {
            "state": {v: k for k, v in _USER_HEALTH.items()}[user.health],
            "since": since.isoformat() if since else None,
            "reason": user.last_error,
        }
    if not entry:
        since = user.created_at.isoformat() if user.created_at else None
        return {"state": NEVER_TESTED, "since": since, "reason": NEVER_TESTED_REASON, "code": "", "detail": ""}
    return {
        "state": entry.get("state", HEALTHY),
        "since": entry.get("since"),
        "reason": entry.get("reason", ""),
        "code": entry.get("code", ""),
        "detail": entry.get("detail", ""),
    }


def worst_state(states: list[dict[str, str | None]]) -> dict[str, str | None]:
    """The user's state: its worst kind's (inactive when no kind is synchronized)."""
    if not states:
        return {"state": INACTIVE, "since": None, "reason": ""}
    worst = max(states, key=lambda s: STATE_ORDER.index(s["state"]))
    return {"state": worst["state"], "since": worst["since"], "reason": worst["reason"]}


# --- Test & enable (O5) --------------------------------------------------------------------------

_TRANSIENT_CODES = ("unreachable", "throttled")


def record_mailbox_test(user: SyncUser, kinds: list[str], ok: bool, readable: Readable | None) -> None:
    """A mailbox test's result becomes its kinds' state: reached, a never-tested or failing kind is
    healthy (a held one stays held); not reached, each kind fails (or backs off) with the reason."""
    now = timezone.now()
    entries = user.kind_health or {}
    fields: list[str] = []
    for kind in kinds:
        current = entries.get(kind, {}).get("state")
        if ok:
            if current in (None, FAILING, BACKING_OFF):
                fields = set_kind_state(user, kind, HEALTHY, at=now)
        elif readable is not None and readable.code in _TRANSIENT_CODES:
            fields = set_kind_state(user, kind, BACKING_OFF, at=now, readable=readable)
            user.backoff_until = now + timedelta(seconds=BACKOFF_FIRST_S)
        else:
            fields = set_kind_state(user, kind, FAILING, at=now, readable=readable)
    if not ok:
        user.last_error_at = now
        fields.append("last_error_at")
    if fields:
        user.save(update_fields=[*set(fields), "updated_at"])
