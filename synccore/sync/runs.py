"""Run records and user health: what every pass does before and after its work (S2, S3)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from synccore.mailbox.base import MailboxBackend, MailboxError
from synccore.models import Health, Outcome, SyncKind, SyncRun, SyncUser
from synccore.sync import relink
from synccore.sync.actions import Action
from synccore.sync.connection import open_user_backend

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 60.0
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

    def decided(self, action: Action) -> None:
        if self.on_action is not None:
            self.on_action(action)

    def checkpoint(self) -> None:
        """Called between write batches: an item boundary where a pass may stop cleanly."""
        if self.should_stop():
            raise PassAborted("The synchronizer is stopping.")


def start_run(user: SyncUser, kind: SyncKind, ctx: PassContext) -> SyncRun:
    return SyncRun.objects.create(
        environment_id=user.environment_id, sync_user=user, kind=kind, trigger=ctx.trigger, full=ctx.full
    )


def finish_run(run: SyncRun, user: SyncUser, *, requests: int, held: bool = False) -> SyncRun:
    run.finished_at = timezone.now()
    run.requests = requests
    if held:
        run.outcome = Outcome.HELD
    else:
        run.outcome = Outcome.PARTIAL if (run.failed or run.skipped) else Outcome.SUCCESS
    run.save()
    last_pass_field = "last_contact_pass_at" if run.kind == SyncKind.CONTACTS else "last_calendar_pass_at"
    setattr(user, last_pass_field, run.finished_at)
    fields = [last_pass_field, "updated_at"]
    if held:
        user.health = Health.HELD
        fields.append("health")
    elif user.health in (Health.BACKING_OFF, Health.HELD):
        user.health, user.backoff_until = Health.HEALTHY, None
        fields += ["health", "backoff_until"]
    user.save(update_fields=fields)
    return run


def fail_run(run: SyncRun, user: SyncUser, error: Exception, *, requests: int) -> SyncRun:
    """A whole pass failed: record why and set the user's health (S3)."""
    run.finished_at = timezone.now()
    run.requests = requests
    run.error = str(error)
    run.outcome = Outcome.ABORTED if isinstance(error, PassAborted) else Outcome.FAILED
    run.save()
    if isinstance(error, PassAborted):
        return run
    user.last_error, user.last_error_at = str(error), run.finished_at
    if isinstance(error, MailboxError) and not error.permanent:
        user.health = Health.BACKING_OFF
        user.backoff_until = run.finished_at + timedelta(seconds=_backoff_seconds(user, error))
    else:
        user.health = Health.UNHEALTHY
    user.save(update_fields=["last_error", "last_error_at", "health", "backoff_until", "updated_at"])
    return run


def _backoff_seconds(user: SyncUser, error: MailboxError) -> float:
    """Exponential per user, honouring the server's own back-off."""
    failures = (
        SyncRun.objects.filter(sync_user=user, outcome=Outcome.FAILED).order_by("-started_at")[:6].count()
    )
    wait = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, failures - 1))
    return max(wait, error.retry_after or 0)


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
        return fail_run(run, user, exc, requests=backend.requests - before)
    finally:
        if own_backend:
            backend.close()
    return finish_run(run, user, requests=backend.requests - before, held=not allowed)
