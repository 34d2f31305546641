"""Run passes for an environment or one user, in the foreground (sync_now, tests, benches)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from synccore.models import Environment, Outcome, SyncKind, SyncRun, SyncUser
from synccore.sync.calendar import run_calendar_pass
from synccore.sync.contacts import run_contact_pass
from synccore.sync.email import filing_enabled, run_email_pass
from synccore.sync.runs import PassContext
from synccore.sync.tasks import run_task_pass

COUNTS = ("created", "updated", "deleted", "skipped", "failed", "conflicts", "requests")
BUSY = "another pass holds this mailbox"

# Runs one pass of one kind for one user; None when it could not (another pass holds the mailbox).
Runner = Callable[[SyncUser, str, PassContext], SyncRun | None]


class UnknownTarget(LookupError):
    """An environment or user that does not exist (bad arguments)."""


@dataclass
class Summary:
    environment: str
    users: int = 0
    aborted: int = 0
    failed_passes: int = 0
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    runs: list[SyncRun] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # "mailbox kind" of passes not run: held elsewhere

    def add(self, run: SyncRun) -> None:
        self.users += 1
        self.runs.append(run)
        for name in COUNTS:
            self.totals[name] += getattr(run, name)
        # "failed" counts what failed: items, and whole passes that failed (a missing mailbox, a
        # refused password); "aborted" only passes stopped before their end (a stop, a lost lease).
        if run.outcome == Outcome.FAILED:
            self.failed_passes += 1
            self.totals["failed"] += 1
        elif run.outcome == Outcome.ABORTED:
            self.aborted += 1

    def as_dict(self) -> dict:
        return {
            "environment": self.environment,
            "users": self.users,
            **self.totals,
            "aborted": self.aborted,
            "busy": len(self.busy),
        }


# Every kind a pass is run for, in the order ``all`` runs them.
ALL_KINDS = (SyncKind.CONTACTS, SyncKind.CALENDAR, SyncKind.TASKS, SyncKind.EMAIL)


def pass_runner(kind: str) -> Callable[..., SyncRun]:
    if kind == SyncKind.CONTACTS:
        return run_contact_pass
    if kind == SyncKind.EMAIL:
        return run_email_pass
    return run_task_pass if kind == SyncKind.TASKS else run_calendar_pass


def kind_switched_on(user: SyncUser, kind: str) -> bool:
    """The user's own on/off for a kind (beside the environment's)."""
    if kind == SyncKind.CONTACTS:
        return user.contacts_enabled
    if kind == SyncKind.EMAIL:
        return user.email_enabled
    return user.tasks_enabled if kind == SyncKind.TASKS else user.calendar_enabled


def kind_enabled(user: SyncUser, kind: str) -> bool:
    sync_settings = user.environment.settings
    if kind == SyncKind.CONTACTS:
        return sync_settings.synchronize_contacts and user.contacts_enabled
    if kind == SyncKind.TASKS:
        # T1, T5: only while task synchronization is on and its direction is not off.
        return sync_settings.synchronize_tasks and sync_settings.tasks_direction != "off" and user.tasks_enabled
    if kind == SyncKind.EMAIL:
        return filing_enabled(sync_settings, user)  # E1
    return sync_settings.synchronize_activities and user.calendar_enabled


def target_users(environment_name: str, user_email: str | None) -> tuple[Environment, list[SyncUser]]:
    environment = Environment.objects.filter(name=environment_name).select_related("settings").first()
    if environment is None:
        raise UnknownTarget(f"There is no environment named “{environment_name}”.")
    users = SyncUser.objects.filter(environment=environment).select_related(
        "environment__settings", "employee"
    )
    if user_email:
        users = users.filter(mailbox_email__iexact=user_email)
        if not users:
            raise UnknownTarget(f"{user_email} is not a sync user of {environment_name}.")
        if not users[0].active:
            raise UnknownTarget(f"{user_email} is inactive: its synchronization is stopped.")
    else:
        users = users.filter(active=True)
    return environment, list(users)


def run_passes(
    environment_name: str,
    *,
    user_email: str | None = None,
    kind: str = "all",
    full: bool = False,
    trigger: str = "command",
    on_progress: Callable[[str, int, int], None] | None = None,
    runner: Runner | None = None,
) -> Summary:
    """Passes in this process, one after the other. ``runner`` runs each (the runtime's takes the
    mailbox's lease, as a worker's pass does); without it, the pass runs as it is (tests, benches)."""
    environment, users = target_users(environment_name, user_email)
    kinds = list(ALL_KINDS) if kind == "all" else [SyncKind(kind)]
    summary = Summary(environment.name)
    for user in users:
        for one_kind in kinds:
            if not kind_enabled(user, one_kind):
                continue
            progress = None
            if on_progress:

                def progress(done: int, total: int, email=user.mailbox_email, k=one_kind) -> None:
                    on_progress(f"{email} {k}", done, total)

            ctx = PassContext(trigger=trigger, full=full, on_progress=progress)
            run = runner(user, one_kind, ctx) if runner else pass_runner(one_kind)(user.pk, ctx)
            if run is None:
                summary.busy.append(f"{user.mailbox_email} {one_kind}")
            else:
                summary.add(run)
    return summary
