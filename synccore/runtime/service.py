"""The synchronizer's service functions: the one door of the console, the API, the admin, the
webhooks and the commands.

Each takes ids and returns plain data (or the row it changed); the passes they lead to are
enqueued on the workers (`scheduling`, `passes`, `push`). start / stop / sync_now / status /
test_connection drive the synchronizer of an environment; the administrator's actions on users,
items and conflicts follow.

Illegal transitions raise ``IllegalTransition`` (the API answers 409); a start whose settings or
connection fail raises ``StartFailed`` after moving the environment to "failed" with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Model, QuerySet
from django.utils import timezone

from synccore.models import (
    Activity,
    Attendee,
    Backend,
    Conflict,
    ConflictChoice,
    Environment,
    Health,
    ItemLink,
    LinkState,
    LoopHold,
    Outcome,
    SynchronizerState,
    SyncKind,
    SyncRun,
    SyncUser,
    Trigger,
    UnfiledMessage,
)
from synccore.runtime import alerts, config, leases, passes, push, queue, scheduling
from synccore.runtime.push import graph as graph_push
from synccore.sync import contacts, email, loops, relink, runs
from synccore.sync.connection import ConnectionReport, check_connection, check_mailbox
from synccore.sync.explain import explain_item as item_history
from synccore.sync.explain import run_decisions as decisions_of_run
from synccore.sync.preview import preview_passes
from synccore.sync.readable import Readable, explain
from synccore.sync.service import Summary, kind_enabled, kind_switched_on, run_passes

log = logging.getLogger(__name__)

KINDS = passes.KINDS

# Link states an administrator is shown in “items needing attention”.
ATTENTION_LINK_STATES = (
    LinkState.FAILED,
    LinkState.SKIPPED,
    LinkState.HELD,
    LinkState.NOT_FOUND,
    LinkState.AMBIGUOUS,
)
ATTENTION_HEALTH = (Health.UNHEALTHY, Health.HELD, Health.BACKING_OFF)
# A user's kind in one of these states needs a person (O2): the console's Attention tab lists it.
NEEDS_ATTENTION = runs.NEEDS_ATTENTION
_KIND_OF_LINK = {
    "contact": SyncKind.CONTACTS,
    "company": SyncKind.CONTACTS,
    "activity": SyncKind.CALENDAR,
    "task": SyncKind.TASKS,
}


class RuntimeServiceError(Exception):
    """Base of the runtime's errors; the message is for people."""


class IllegalTransition(RuntimeServiceError):
    pass


class StartFailed(RuntimeServiceError):
    pass


class NoAlertChannel(IllegalTransition):
    """A test alert for an environment with neither alert addresses nor a webhook."""


class UnknownUser(RuntimeServiceError):
    pass


class UnknownCursor(RuntimeServiceError):
    pass


class MailboxBusy(IllegalTransition):
    """Another pass holds the mailbox's lease (issue 16, finding 2): try again when it is done."""


class UserStillActive(RuntimeServiceError):
    """Removing synchronized items from an active user's mailbox would be undone by the next pass."""


# --- The synchronizer of an environment (S1, S2, S4) -------------------------------------------


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
    try:
        problems = env.settings.connection_problems()
        if problems:
            _fail_start(env, " ".join(problems))
        report = test_connection(environment_id)
        if not report.ok:
            _fail_start(env, report.error or "The connection test failed.")
        # Running before anything is enqueued: passes refuse to start for an environment not running.
        env.set_state(SynchronizerState.RUNNING)
        scheduling.schedule_environment(env)
    except StartFailed:
        raise
    except Exception as exc:  # any error while starting: failed (422), never left "starting"
        log.exception("starting the synchronizer of %s failed", env.name)
        _fail_start(env, explain(exc).sentence)
    return status(environment_id)


def _fail_start(env: Environment, reason: str) -> None:
    # Nothing may keep ticking for an environment that failed to start.
    scheduling.unschedule_environment(env)
    env.set_state(SynchronizerState.FAILED, reason)
    alerts.observe_quietly(env.pk)  # O6: "the environment failed" (sent on a worker)
    raise StartFailed(reason)


def stop(environment_id: int) -> dict[str, Any]:
    """No new passes; a pass in flight stops at its next item boundary (S1)."""
    with transaction.atomic():
        env = _locked_environment(environment_id)
        if env.state in (SynchronizerState.STOPPED, SynchronizerState.STOPPING):
            raise IllegalTransition(f"The synchronizer of {env.name} is not running.")
        env.set_state(SynchronizerState.STOPPING)
    scheduling.unschedule_environment(env)
    env.set_state(SynchronizerState.STOPPED)
    push.stopped(env)
    return status(environment_id)


def sync_now(
    environment_id: int, *, user_email: str | None = None, kind: str = "all", full: bool = False
) -> dict[str, Any]:
    """Enqueue passes now for one user or every active user (S4 when full). Only while running:
    a stopped synchronizer writes to no mailbox (`manage.py sync_now` is the foreground tool that
    runs anyway)."""
    env = Environment.objects.get(pk=environment_id)
    if env.state != SynchronizerState.RUNNING:
        raise IllegalTransition(
            f"The synchronizer of {env.name} is {env.get_state_display().lower()}: start the synchronizer first."
        )
    users = _users(env, user_email)
    kinds = list(KINDS) if kind == "all" else [SyncKind(kind)]
    trigger = Trigger.FULL if full else Trigger.MANUAL
    broker = queue.current_broker()
    for one_kind in kinds:  # kind by kind: see scheduling.schedule_environment
        for user in users:
            if passes.runnable_kind(user, one_kind):
                passes.enqueue_pass(user, one_kind, full=full, trigger=trigger, broker=broker)
    return status(environment_id)


def sync_now_foreground(
    environment_name: str,
    *,
    user_email: str | None = None,
    kind: str = "all",
    full: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> Summary:
    """``manage.py sync_now``: the passes in this process, also while stopped, each under its
    mailbox's lease as a worker's pass (a pass holding the mailbox is waited for, then the
    mailbox is reported busy). Raises ``UnknownTarget`` for an unknown environment or user."""
    return run_passes(
        environment_name,
        user_email=user_email,
        kind=kind,
        full=full,
        on_progress=on_progress,
        runner=passes.run_foreground,
    )


PREVIEW_PAGE_SIZE = 100


def preview(
    environment_id: int,
    *,
    user_email: str | None = None,
    kind: str = "all",
    full: bool = False,
    cursor: str = "",
    page_size: int | None = None,
) -> dict[str, Any]:
    """P1: what sync-now would do, in the foreground, writing nothing (so also while stopped).

    The preview is taken again for each page: ``cursor`` is where the page starts in its list
    of actions (a later page of a changed environment shows the plan as it is then)."""
    env = Environment.objects.get(pk=environment_id)
    _users(env, user_email)  # an unknown or inactive user is refused as sync-now refuses it
    try:
        offset = max(0, int(cursor or 0))
    except ValueError:
        raise UnknownCursor(f"“{cursor}” is not a cursor of this preview.") from None
    result = preview_passes(env.name, user_email=user_email, kind=kind, full=full)
    page_size = page_size or PREVIEW_PAGE_SIZE
    page = result.actions[offset : offset + page_size]
    following = offset + page_size
    return {
        "summary": result.summary(),
        "errors": result.errors,
        "messages": [message.as_dict() for message in result.messages],
        "actions": [planned.as_dict() for planned in page],
        "next_cursor": str(following) if following < len(result.actions) else None,
    }


def preview_change(environment_id: int, proposed: Callable[[], object]) -> dict[str, Any]:
    """P1 before a save: what the passes of every active user would do once a filter, mapping or
    settings change is saved. ``proposed`` writes the unsaved change; it runs only inside the
    preview's transactions, which are rolled back, so nothing is saved or written anywhere (also
    while the synchronizer is stopped). The answer is ``preview``'s, with ``words`` (the summary
    as a sentence) and ``mailboxes`` (how many mailboxes it would write in)."""
    env = Environment.objects.get(pk=environment_id)
    result = preview_passes(env.name, proposed=proposed)
    return {
        "summary": result.summary(),
        "words": result.in_words(),
        "mailboxes": result.mailboxes_affected(),
        "errors": result.errors,
        "messages": [message.as_dict() for message in result.messages],
        "actions": [planned.as_dict() for planned in result.actions[:PREVIEW_PAGE_SIZE]],
        "more": max(0, len(result.actions) - PREVIEW_PAGE_SIZE),
    }


def explain_item(environment_id: int, kind: str, external_id: str) -> dict[str, Any]:
    """P2: "why does this item look like this?" — a CRM record's links and the decisions passes
    took about it, newest first. Unknown environment or item: ``ObjectDoesNotExist`` (404)."""
    Environment.objects.get(pk=environment_id)
    return item_history(environment_id, kind, external_id)


def run_decisions(environment_id: int, run_id: int) -> dict[str, Any]:
    """P2: what one run decided, item by item, in the order it decided."""
    return decisions_of_run(environment_id, run_id)


def loop_holds(environment_id: int) -> list[LoopHold]:
    """P3: items the loop detector holds (Needs attention), newest first."""
    return loops.open_holds(environment_id)


def loop_holds_query(environment_id: int) -> QuerySet[LoopHold]:
    """P3: the open holds of an environment, as a query (the API pages them with the rest)."""
    return LoopHold.objects.filter(environment_id=environment_id, released_at__isnull=True).select_related("sync_user")


def release_loop_hold(hold_id: int, released_by: str) -> LoopHold:
    """P3: one click after a fix — the item is decided afresh by a full pass of its kind for its
    mailbox, now when the synchronizer runs (else at its first pass after a start)."""
    hold = loops.release(hold_id, released_by)
    user = hold.sync_user
    if user.active and Environment.objects.filter(pk=hold.environment_id, state=SynchronizerState.RUNNING).exists():
        sync_now(hold.environment_id, user_email=user.mailbox_email, kind=hold.pass_kind, full=True)
    return hold


def sync_all(environment_id: int, *, user_email: str | None = None) -> dict[str, Any]:
    """S4: a full re-sync (every item re-written), per user or for the whole environment."""
    return sync_now(environment_id, user_email=user_email, kind="all", full=True)


def _users(env: Environment, user_email: str | None) -> list[SyncUser]:
    if not user_email:
        return passes.active_users(env)
    users = SyncUser.objects.filter(
        environment=env, active=True, mailbox_email__iexact=user_email
    ).select_related("environment__settings")
    if not users:
        raise UnknownUser(f"{user_email} is not an active sync user of {env.name}.")
    return list(users)


def run_pass(user_id: int, kind: str, trigger: str = Trigger.SCHEDULE, full: bool = False) -> str:
    """A worker's pass for one mailbox, then what changed is told (O6)."""
    result = passes.run_pass(user_id, kind, trigger, full)
    if not result.startswith("skipped"):
        environment_id = SyncUser.objects.filter(pk=user_id).values_list("environment_id", flat=True).first()
        if environment_id:
            alerts.observe_quietly(environment_id, [user_id])
    return result


def run_pass_batch(
    user_ids: list[int], kind: str, trigger: str = Trigger.SCHEDULE, full: bool = False, *, threads: int | None = None
) -> list[str]:
    """A worker's passes of one kind for several mailboxes at once (`passes.run_passes`), then
    what changed is told (O6), once per environment rather than once per pass."""
    results = passes.run_passes(user_ids, kind, trigger, full, threads=threads)
    ran = [user_id for user_id, result in zip(user_ids, results, strict=True) if not result.startswith("skipped")]
    by_environment: dict[int, list[int]] = {}
    for user_id, environment_id in SyncUser.objects.filter(pk__in=ran).values_list("pk", "environment_id"):
        by_environment.setdefault(environment_id, []).append(user_id)
    for environment_id, users in by_environment.items():
        alerts.observe_quietly(environment_id, users)
    return results


def send_test_alert(environment_id: int, requested_by: str = "") -> list[str]:
    """O6: a test alert on the environment's channels (on a worker); the channels it goes to."""
    channels = alerts.send_test(environment_id, requested_by)
    if not channels:
        raise NoAlertChannel("Enter alert e-mail addresses or an alert webhook URL in Settings, and save, first.")
    return channels


def deliver_alerts(environment_id: int, events: list[dict], channels: list[str], attempt: int = 0) -> dict:
    return alerts.deliver(environment_id, events, channels, attempt)


def test_connection(environment_id: int) -> ConnectionReport:
    """Try the environment's Exchange connection and say what was tried and why it failed (an
    unexpected error too: the report says it, the caller never sees it raised)."""
    env = Environment.objects.select_related("settings").get(pk=environment_id)
    problems = env.settings.connection_problems()
    if problems:
        return ConnectionReport(ok=False, tried=["Checked the settings"], error=" ".join(problems))
    try:
        return check_connection(env)
    except Exception as exc:
        log.exception("testing the connection of %s failed", env.name)
        return ConnectionReport.failed(explain(exc))


TEST_MAILBOX = "synccore.tasks.test_mailbox"


def test_mailboxes(environment_id: int, user_ids: list[int] | None = None) -> int:
    """Test & enable (O5): test each active mailbox of the environment (or those given) on a
    worker, not in the request; the result shows as the users' state. Returns how many."""
    users = SyncUser.objects.filter(environment_id=environment_id, active=True)
    if user_ids is not None:
        users = users.filter(pk__in=user_ids)
    ids = list(users.values_list("pk", flat=True))
    broker = queue.current_broker() if ids else None
    for user_id in ids:
        queue.enqueue(TEST_MAILBOX, user_id, broker=broker)
    return len(ids)


# A change to any of these re-tests every mailbox (O5); a user added or re-addressed is tested.
CONNECTION_FIELDS = frozenset(
    {
        "backend", "ews_url", "autodiscover_email", "auth_type", "access_type", "service_account",
        "service_password", "oauth_tenant_id", "oauth_client_id", "oauth_client_secret",
        "graph_endpoint", "authority_url", "ca_bundle", "allow_plain_http",
    }
)  # fmt: skip
USER_FIELDS_TESTED = frozenset({"mailbox_email", "active", "contacts_enabled", "calendar_enabled"})


def settings_saved(environment_id: int, changed: set[str]) -> int:
    """The settings were saved: what runs follows, and a new connection re-tests every mailbox."""
    configuration_changed(environment_id)
    return test_mailboxes(environment_id) if changed & CONNECTION_FIELDS else 0


def user_saved(user_id: int, changed: set[str] | None) -> int:
    """A sync user was added (``changed`` None) or changed: a new or re-addressed mailbox is tested."""
    user = SyncUser.objects.get(pk=user_id)
    configuration_changed(user.environment_id)
    if changed is None or changed & USER_FIELDS_TESTED:
        return test_mailboxes(user.environment_id, [user.pk])
    return 0


def test_mailbox(user_id: int) -> ConnectionReport:
    """One mailbox's test (the worker's side of `test_mailboxes`): its kinds' state follows."""
    user = SyncUser.objects.select_related("environment__settings").filter(pk=user_id, active=True).first()
    if user is None:
        return ConnectionReport(ok=False, error="No such active sync user.", code="no_user")
    report = check_mailbox(user)
    if report.code != "settings":  # incomplete settings are the environment's, not the mailbox's
        kinds = [kind.value for kind in KINDS if kind_enabled(user, kind)]
        failure = None if report.ok else Readable(report.code, report.error, report.detail)
        runs.record_mailbox_test(user, kinds, report.ok, failure)
    return report


def ambiguous_filings(environment_id: int) -> list[Activity]:
    """Filed e-mails waiting for a person to link them (E4, O2): at most 200, newest first."""
    return list(email.ambiguous_filings(environment_id)[:200])


def unfiled_messages(environment_id: int) -> list[UnfiledMessage]:
    """E-mails a pass could not file and a person can act on (issue 19, O2): at most 200, newest first."""
    return list(email.unfiled_messages(environment_id)[:200])


def unfiled_messages_query(environment_id: int) -> QuerySet[UnfiledMessage]:
    """The same, every one (the API pages them)."""
    return email.unfiled_messages(environment_id)


def dismiss_unfiled_message(unfiled_id: int, dismissed_by: str) -> UnfiledMessage:
    """The administrator dealt with a message that could not be filed: no longer listed (until a
    later pass fails on it anew)."""
    return email.dismiss_unfiled(unfiled_id, dismissed_by)


def status(environment_id: int) -> dict[str, Any]:
    """The runtime status for the console and the API (S2)."""
    env = Environment.objects.select_related("settings").get(pk=environment_id)
    users = SyncUser.objects.filter(environment=env).select_related("lease").order_by("mailbox_email")
    last_runs = _last_runs(env)
    # Push over Graph (subscriptions) or EWS (the listener's streams): None where nothing is held.
    subscriptions = push.status_by_user(env)
    rows = []
    for user in users:
        user.environment = env  # the settings are loaded once, not per user
        kinds = {
            kind.value: {
                "enabled": kind_switched_on(user, kind),
                "last_pass": _run_summary(last_runs.get((user.pk, kind.value))),
                "next_due": _iso(_next_due(env, user, kind)),
                "push": subscriptions.get((user.pk, kind.value)),
                **runs.kind_state(user, kind.value, kind_enabled(user, kind)),
            }
            for kind in KINDS
        }
        shown = [kinds[kind.value] for kind in KINDS if kinds[kind.value]["state"] != runs.INACTIVE]
        rows.append(
            {
                "email": user.mailbox_email,
                "active": user.active,
                "backend": user.backend or env.settings.backend,  # H1: the one in use
                "health": user.health,
                "last_error": user.last_error,
                **runs.worst_state(shown if user.active else []),
                # Each kind under its name, and all of them under "kinds": the e-mail kind is
                # there only, since "email" is the mailbox's address.
                **{name: state for name, state in kinds.items() if name != SyncKind.EMAIL},
                "kinds": kinds,
            }
        )
    return {
        "environment": env.name,
        "id": env.pk,
        "state": env.state,
        "since": _iso(env.state_changed_at),
        "reason": env.state_reason,
        # Running, but some user is not healthy (O1): the console's "degraded".
        "degraded": env.state == SynchronizerState.RUNNING
        and any(row["state"] in runs.NEEDS_ATTENTION for row in rows),
        "queue_depth": queue.queue_depth(),
        "workers": queue.live_clusters(),
        "users": rows,
        "secret": _secret(env),
    }


def _secret(env: Environment) -> dict[str, Any]:
    """The client secret's expiry as Needs attention shows it (O2): expiring within 30 days, or expired."""
    state, reason = alerts.secret_state(env, timezone.localdate())
    expires = env.settings.oauth_client_secret_expires_on
    return {"state": state, "reason": reason, "expires_on": expires.isoformat() if expires else None}


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
    enqueued = getattr(lease, passes.enqueued_field(kind)) if lease else None
    due = (enqueued or timezone.now()) + config.pull_interval(env)
    if user.backoff_until and user.backoff_until > due:
        due = user.backoff_until
    return due


def running_progress(environment_id: int) -> dict[int, tuple[int, int]]:
    """Progress (done, total) of the passes running now, per sync user id (S4)."""
    progress: dict[int, tuple[int, int]] = {}
    for run in SyncRun.objects.filter(environment_id=environment_id, outcome=Outcome.RUNNING):
        done, total = progress.get(run.sync_user_id, (0, 0))
        progress[run.sync_user_id] = (done + run.progress_done, total + run.progress_total)
    return progress


# --- Administrator changes to settings and sync users ------------------------------------------


def configuration_changed(environment_id: int) -> None:
    """Settings or sync users of an environment were saved (console, API, admin): what runs
    follows at once. Ticks read the pull interval as configured at each tick and the EWS push
    listener re-reads its streams at every poll; Graph subscriptions are maintained now when
    they no longer match what is wanted (`push.follow`)."""
    push.follow(environment_id)


def switch_backend(
    environment_id: int, to: str, *, user_email: str | None = None, dry_run: bool = True
) -> dict[str, Any]:
    """Move one mailbox or the whole environment to another backend (H2, H3): per mailbox how many
    links carry over and which items could not be found. With ``dry_run`` nothing changes;
    otherwise the backend is switched and each mailbox's next pass finds its links again.
    Raises LookupError for an unknown user, ValueError for an unknown backend."""
    to = Backend(to).value
    env = Environment.objects.select_related("settings").get(pk=environment_id)
    relinkings = relink.plan_switch(env, to, user_email)
    if not dry_run:
        relink.make_switch(env, to, user_email)
        configuration_changed(env.pk)
    return relink.switch_report(relinkings, dry_run)


def set_active(user_id: int, active: bool) -> None:
    """(De)activate a sync user. Deactivating stops its synchronization and leaves its mailbox as
    it is (C7)."""
    user = SyncUser.objects.get(pk=user_id)
    SyncUser.objects.filter(pk=user_id).update(active=active, updated_at=timezone.now())
    configuration_changed(user.environment_id)


def delete_user(user_id: int) -> None:
    """Delete a sync user (its links and runs go with it) and its push subscriptions."""
    user = SyncUser.objects.get(pk=user_id)
    with transaction.atomic():
        push.release(user)
        user.delete()


# --- Administrator actions on one user, item or conflict (S3, §5, K8, C7) -----------------------


def reenable(user_id: int) -> SyncUser:
    """An unhealthy user (a permanent error) is synchronized again; with the synchronizer
    running, at once. Its failing and backing-off kinds count as healthy until their next pass;
    their error disappears (O4)."""
    _clear_states(user_id, (runs.FAILING, runs.BACKING_OFF))
    _enqueue_now(user_id)
    return SyncUser.objects.get(pk=user_id)


def reenable_users(environment_id: int, users: list[int | str]) -> list[SyncUser]:
    """Bulk Re-enable (O5): each of these users of the environment (ids or mailbox addresses), as
    `reenable` does one. Raises UnknownUser, with nothing done, naming those that are not its users."""
    known = dict(SyncUser.objects.filter(environment_id=environment_id).values_list("pk", "mailbox_email"))
    by_address = {email.lower(): pk for pk, email in known.items()}
    ids, unknown = [], []
    for value in users:
        text = str(value).strip()
        found = int(text) if text.isascii() and text.isdigit() and int(text) in known else by_address.get(text.lower())
        if found:
            ids.append(found)
        else:
            unknown.append(text)
    if unknown:
        raise UnknownUser(f"No such sync user in this environment: {', '.join(unknown)}.")
    return [reenable(pk) for pk in dict.fromkeys(ids)]


# The users' `?health=` filter: a stored health, or a state as the status gives it; "unhealthy"
# is everything the overview counts as unhealthy (backing off, held or failing), "failing" alone
# the permanent errors, and "healthy" leaves never-tested and inactive users out.
HEALTH_FILTERS = ("healthy", "unhealthy", *runs.STATE_ORDER)


def users_in_health(environment_id: int, health: str) -> list[int]:
    """The ids of the environment's users in that state (see HEALTH_FILTERS)."""
    if health not in HEALTH_FILTERS:
        raise ValueError(f"One of {', '.join(dict.fromkeys(HEALTH_FILTERS))}.")
    wanted = set(runs.NEEDS_ATTENTION) if health == "unhealthy" else {health}
    env = Environment.objects.select_related("settings").get(pk=environment_id)
    ids = []
    for user in SyncUser.objects.filter(environment=env):
        user.environment = env
        kinds = [runs.kind_state(user, kind.value, kind_enabled(user, kind)) for kind in KINDS]
        shown = [k for k in kinds if k["state"] != runs.INACTIVE] if user.active else []
        if runs.worst_state(shown)["state"] in wanted:
            ids.append(user.pk)
    return ids


def confirm_deletions(user_id: int) -> SyncUser:
    """The administrator allows the next pass of each held kind beyond its limit (the safety limit
    §5, the meeting message limit P4); they run now. Each kind gets its own confirmation, used by
    its own pass, so the kinds' passes may run in any order. Nothing held (a confirmation ahead of
    a pass): every kind's next pass is confirmed. Only the held kinds are cleared: another kind's
    failure stays (O1)."""
    with transaction.atomic():
        user = SyncUser.objects.select_for_update().get(pk=user_id)
        held = [kind for kind, entry in (user.kind_health or {}).items() if entry.get("state") == runs.HELD]
        fields = user.confirm_limits(held or SyncUser.CONFIRMABLE_KINDS)
        fields += runs.clear_kind_states(user, (runs.HELD,), at=timezone.now())
        user.save(update_fields=[*fields, "updated_at"])
    _enqueue_now(user_id)
    return SyncUser.objects.get(pk=user_id)


def _clear_states(user_id: int, states: tuple[str, ...]) -> None:
    with transaction.atomic():
        user = SyncUser.objects.select_for_update().get(pk=user_id)
        fields = runs.clear_kind_states(user, states, at=timezone.now())
        user.save(update_fields=[*fields, "updated_at"])


def _enqueue_now(user_id: int) -> None:
    user = SyncUser.objects.select_related("environment__settings").get(pk=user_id)
    if user.environment.state != SynchronizerState.RUNNING or not user.active:
        return
    broker = queue.current_broker()
    for kind in KINDS:
        if passes.runnable_kind(user, kind):
            passes.enqueue_pass(user, kind, full=False, trigger=Trigger.MANUAL, broker=broker)


def retry_item(link_id: int) -> ItemLink:
    """Retry a failed or skipped item now: a pass for its user and kind (held items: confirm)."""
    link = ItemLink.objects.select_related("sync_user").get(pk=link_id)
    if link.state == LinkState.HELD:
        confirm_deletions(link.sync_user_id)
        return link
    if link.state == LinkState.NOT_FOUND:
        # Lost in a change of backend (H2): the administrator's retry is the confirmation that
        # re-creates it; the pass first looks for it once more by its sync id.
        link.state, link.remote_id, link.remote_change_key = LinkState.PENDING, "", ""
        link.save(update_fields=["state", "remote_id", "remote_change_key", "updated_at"])
    # While stopped, no mailbox is written: the item waits for the first pass after a start.
    if Environment.objects.filter(pk=link.environment_id, state=SynchronizerState.RUNNING).exists():
        sync_now(link.environment_id, user_email=link.sync_user.mailbox_email, kind=_KIND_OF_LINK[link.kind].value)
    return link


def resolve_conflict(conflict_id: int, keep: str, resolved_by: str) -> Conflict:
    """Keep the CRM or the Exchange value of a conflicting field (K8).

    The kept value is written to the CRM record; the next calendar pass sees the CRM side differ
    from the last agreed snapshot and writes it to Exchange, as for any CRM edit.
    """
    keep = ConflictChoice(keep)
    with transaction.atomic():
        conflict = Conflict.objects.select_for_update().select_related("link").get(pk=conflict_id)
        record = conflict.link.crm_record
        value = conflict.crm_value if keep == ConflictChoice.CRM else conflict.exchange_value
        if record is not None and _is_plain_field(record, conflict.field):
            field = record._meta.get_field(conflict.field)
            setattr(record, field.attname, field.to_python(value))
            record.save()
        conflict.choice = keep
        conflict.resolved_at = timezone.now()
        conflict.resolved_by = resolved_by
        conflict.save(update_fields=["choice", "resolved_at", "resolved_by"])
    if conflict.link.activity_id:
        environment_id, activity_id = conflict.link.environment_id, conflict.link.activity_id
        transaction.on_commit(lambda: notify_crm_change(environment_id, [activity_id]))
    return conflict


def _is_plain_field(record: Model, name: str) -> bool:
    try:
        field = record._meta.get_field(name)
    except Exception:  # FieldDoesNotExist: the conflict names an Exchange-only field
        return False
    return field.concrete and not field.is_relation and field.editable


def remove_synchronized_items(sync_user_id: int) -> int:
    """C7: clean a deactivated user's mailbox of the contacts this product wrote; how many."""
    user = SyncUser.objects.get(pk=sync_user_id)
    if user.active:
        raise UserStillActive(f"Deactivate {user.mailbox_email} first: its next pass would write them again.")
    # Under the mailbox's lease, as a pass: never beside a pass still finishing its writes.
    holder = leases.new_holder()
    if not leases.acquire(user.pk, holder, config.lease_ttl_s()):
        raise MailboxBusy(f"Another pass holds {user.mailbox_email}: try again when it is done.")
    try:
        return contacts.remove_synchronized_items(user.pk, confirm=True)
    finally:
        leases.release(user.pk, holder)


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
        passes.push_calendar(user.pk)


def _concerned_users(env: Environment, activity_ids: list[int]) -> list[SyncUser]:
    rows = Activity.all_objects.filter(pk__in=activity_ids).values("organizer_id", "organizer_email")
    employees = {row["organizer_id"] for row in rows if row["organizer_id"]}
    emails = {row["organizer_email"].lower() for row in rows if row["organizer_email"]}
    for row in Attendee.objects.filter(activity_id__in=activity_ids).values("employee_id", "email"):
        if row["employee_id"]:
            employees.add(row["employee_id"])
        if row["email"]:
            emails.add(row["email"].lower())
    everyone = passes.active_users(env)
    users = [
        user for user in everyone if user.employee_id in employees or user.mailbox_email.lower() in emails
    ]
    # An activity whose people we cannot tell (deleted with its attendees): every calendar user.
    return users or everyone


def receive_graph_notifications(entries: list[Any]) -> int:
    """Graph's change notifications (the webhook): a targeted pass per mailbox named."""
    return graph_push.receive_notifications(entries)


def receive_graph_lifecycle(entries: list[Any]) -> int:
    """Graph's lifecycle notifications (the webhook): catch up, renew or subscribe again."""
    return graph_push.receive_lifecycle(entries)
