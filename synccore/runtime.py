"""The synchronizer runtime: service functions used by the console, the API and commands.

start / stop / sync_now / status / test_connection take ids and return plain data. They are the
only door the edges use; the scheduling behind them (django-q2) lives here too.

Illegal transitions raise ``IllegalTransition`` (the API answers 409); a start whose settings or
connection fail raises ``StartFailed`` after moving the environment to "failed" with the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from synccore.models import Environment, SynchronizerState, SyncKind, SyncRun, SyncUser

KINDS = (SyncKind.CONTACTS, SyncKind.CALENDAR)


class RuntimeServiceError(Exception):
    """Base of the runtime's errors; the message is for people."""


class IllegalTransition(RuntimeServiceError):
    pass


class StartFailed(RuntimeServiceError):
    pass


class UnknownUser(RuntimeServiceError):
    pass


@dataclass
class ConnectionReport:
    ok: bool
    tried: list[str] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        reason = " ".join(problems)
        env.set_state(SynchronizerState.FAILED, reason)
        raise StartFailed(reason)
    report = test_connection(environment_id)
    if not report.ok:
        env.set_state(SynchronizerState.FAILED, report.error)
        raise StartFailed(report.error)
    env.set_state(SynchronizerState.RUNNING)
    _schedule(env)
    return status(environment_id)


def stop(environment_id: int) -> dict[str, Any]:
    """No new passes; a pass in flight stops at its next item boundary (S1)."""
    with transaction.atomic():
        env = _locked_environment(environment_id)
        if env.state in (SynchronizerState.STOPPED, SynchronizerState.STOPPING):
            raise IllegalTransition(f"The synchronizer of {env.name} is not running.")
        env.set_state(SynchronizerState.STOPPING)
    _unschedule(env)
    env.set_state(SynchronizerState.STOPPED)
    return status(environment_id)


def sync_now(
    environment_id: int, *, user_email: str | None = None, kind: str = "all", full: bool = False
) -> dict[str, Any]:
    """Enqueue passes now for one user or every active user (S4 when full)."""
    env = Environment.objects.get(pk=environment_id)
    users = _users(env, user_email)
    kinds = list(KINDS) if kind == "all" else [SyncKind(kind)]
    for user in users:
        for one_kind in kinds:
            _enqueue_pass(user, one_kind, full=full)
    return status(environment_id)


def _users(env: Environment, user_email: str | None) -> list[SyncUser]:
    users = SyncUser.objects.filter(environment=env, active=True)
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
    from synccore.sync.connection import check_connection  # engine door; lands with the mailbox backends

    return check_connection(env)


def status(environment_id: int) -> dict[str, Any]:
    """The runtime status for the console and the API (S2)."""
    env = Environment.objects.get(pk=environment_id)
    users = SyncUser.objects.filter(environment=env).order_by("mailbox_email")
    last_runs = _last_runs(env)
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
    if env.state != SynchronizerState.RUNNING or not user.active:
        return None
    last = user.last_contact_pass_at if kind == SyncKind.CONTACTS else user.last_calendar_pass_at
    return (last or timezone.now()) + env.settings.pull_interval_delta


# --- Scheduling: filled in by the runtime issue (django-q2) -----------------------------------


def _schedule(env: Environment) -> None:
    for user in _users(env, None):
        for kind in KINDS:
            _enqueue_pass(user, kind, full=False)


def _unschedule(env: Environment) -> None:
    """Placeholder until django-q2 lands: there is no schedule to remove yet."""


def _enqueue_pass(user: SyncUser, kind: SyncKind, *, full: bool) -> None:
    """Placeholder until django-q2 lands: passes are run by ``sync_now`` in the foreground."""


def _queue_depth() -> int:
    return 0


def _workers() -> list[dict[str, Any]]:
    return []


def notify_crm_change(environment_id: int, activity_ids: list[int]) -> None:
    """A CRM-side change to synchronized activities (K14): call after the transaction commits.

    With push on and the synchronizer running this enqueues a targeted calendar sync; until the
    runtime's push lands it is a no-op, and the next pull pass picks the change up.
    """
