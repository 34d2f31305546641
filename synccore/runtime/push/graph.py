"""Push over Microsoft Graph (K14): change-notification subscriptions and their notifications.

For a running environment on the Graph backend with push on, every active sync user whose calendar
is synchronized holds one Graph subscription on ``users/{mailbox}/events``, and every one whose
tasks are synchronized one on its To Do list, ``users/{mailbox}/todo/lists/{list}/tasks`` (the list
its task pass syncs; To Do lets these live 4230 minutes at most) — ``GraphSubscription`` rows, one
per user and kind. Graph POSTs each change to ``PUBLIC_BASE_URL`` + ``/hooks/graph/``; the webhook hands the
entries, through the runtime service, to `receive_notifications`, which checks each one's
clientState against the row its subscription id names and enqueues a targeted calendar pass for
that mailbox (the pass itself runs on a worker, never in the request). Lifecycle notifications arrive at ``/hooks/graph/lifecycle/``:
``missed`` enqueues a catch-up pass, ``reauthorizationRequired`` a renewal, ``subscriptionRemoved``
a new subscription (and a catch-up pass).

Contacts hold no subscription: they flow one way (CRM → Exchange), so an Outlook edit of a contact
is only overwritten, and a pull pass does that as well; a subscription would turn each of our own
contact writes into a notification and a pass that finds nothing to do.

`maintain` converges the rows with what is wanted and is the one door for creating, renewing and
removing subscriptions: the runtime enqueues it on start and on stop, `follow` as soon as a saved
setting or sync user leaves the rows out of step with what is wanted (push toggled, a user added,
(de)activated or re-addressed, the backend switched), and a django-q2 schedule runs it
every `MAINTENANCE_MINUTES` while the environment runs, renewing what expires within
`RENEW_WITHIN`, re-creating what Graph lost or let expire (with a catch-up pass: its
notifications are lost) or what posts to another address than ``PUBLIC_BASE_URL`` gives now,
and retrying failed creations. A mailbox whose subscription cannot be made stays on pull only,
with the reason on its row (shown in the status).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

from django.conf import settings as django_settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from synccore.mailbox.base import ItemNotFound, MailboxBackend, MailboxError
from synccore.models import (
    Backend,
    Environment,
    FolderState,
    GraphSubscription,
    PushSubscriptionState,
    SynchronizerState,
    SyncKind,
    SyncSettings,
    SyncUser,
)
from synccore.runtime import passes, queue
from synccore.sync.connection import backend_class, open_backend

log = logging.getLogger(__name__)

# Graph lets Outlook subscriptions live up to 10080 minutes; three days leaves room for a
# maintenance run that is late by a day or two before anything expires.
LIFETIME = timedelta(days=3)
# To Do task subscriptions live at most 4230 minutes (Graph refuses more): a little under that.
TASKS_LIFETIME = timedelta(minutes=4200)
RENEW_WITHIN = timedelta(days=2)
MAINTENANCE_MINUTES = 60
# A row left "creating" this long belongs to a worker that died while subscribing.
STALE_CREATING = timedelta(minutes=15)
CREATE_FAILED = "No push for this mailbox (it is synchronized by pull only): "


class PushConfigurationError(Exception):
    pass


# --- URLs ---------------------------------------------------------------------------------------


def notification_urls() -> tuple[str, str]:
    """(notification URL, lifecycle URL) under PUBLIC_BASE_URL."""
    base = str(getattr(django_settings, "PUBLIC_BASE_URL", "") or "").strip()
    problem = public_base_url_problem(base)
    if problem:
        raise PushConfigurationError(problem)
    base = base.rstrip("/") + "/"
    return urljoin(base, reverse("graph-hook").lstrip("/")), urljoin(
        base, reverse("graph-hook-lifecycle").lstrip("/")
    )


def current_notification_url() -> str:
    """The notification URL subscriptions should have now; "" when PUBLIC_BASE_URL is unusable
    (then the subscriptions held are kept as they are rather than replaced by none)."""
    try:
        return notification_urls()[0]
    except PushConfigurationError:
        return ""


def public_base_url_problem(url: str) -> str:
    """Why Graph could not call webhooks under this base URL ("" when it can)."""
    if not url:
        return "PUBLIC_BASE_URL is not set; Microsoft Graph needs it to deliver notifications."
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return ""
    if parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}:
        return ""  # tests and a local simulator only: Microsoft Graph calls https URLs alone
    return f"PUBLIC_BASE_URL must be an https URL that Microsoft Graph can reach (it is {url!r})."


# --- What is wanted -----------------------------------------------------------------------------


# The kinds that hold a subscription: calendar events, To Do tasks (T1) and messages (e-mail
# filing). Contacts flow one way.
PUSHED_KINDS = (SyncKind.CALENDAR, SyncKind.TASKS, SyncKind.EMAIL)


def _push_environment(env: Environment) -> bool:
    s = env.settings
    return (
        env.state == SynchronizerState.RUNNING
        and s.push_enabled
        and (s.synchronize_activities or s.synchronize_tasks or s.file_emails)
    )


def _graph_in_use(env: Environment) -> bool:
    """The environment's backend is Graph, or some of its mailboxes are (a hybrid organisation)."""
    return Backend.GRAPH in env.settings.backends_in_use()


def wanted_users(env: Environment) -> list[SyncUser]:
    """The sync users that should hold a calendar subscription now."""
    if not _push_environment(env):
        return []
    # A hybrid environment: only the mailboxes reached over Graph (H1); EWS streams take the rest.
    users = (
        SyncUser.objects.filter(environment=env, active=True)
        .filter(SyncUser.on_backend(Backend.GRAPH))
        .select_related("environment__settings")
    )
    return [user for user in users if passes.runnable_kind(user, SyncKind.CALENDAR)]


def wanted_rows(env: Environment) -> dict[tuple[int, str], SyncUser]:
    """(user id, kind) → user: every subscription that should be held now."""
    wanted = {(user.pk, SyncKind.CALENDAR.value): user for user in wanted_users(env)}
    if _push_environment(env):
        users = (
            SyncUser.objects.filter(environment=env, active=True)
            .filter(SyncUser.on_backend(Backend.GRAPH))
            .select_related("environment__settings")
        )
        for user in users:
            for kind in (SyncKind.TASKS, SyncKind.EMAIL):
                if passes.runnable_kind(user, kind):
                    wanted[(user.pk, kind.value)] = user
    return wanted


def task_list_id(user: SyncUser) -> str:
    """The To Do list the user's task pass syncs (from its folder state: no request); "" before
    its first pass over Graph."""
    if user.linked_backend and user.linked_backend != Backend.GRAPH:
        return ""  # ids of another protocol: the next pass relinks first
    state = FolderState.objects.filter(sync_user=user, kind=SyncKind.TASKS, folder_name="").first()
    return state.remote_folder_id if state is not None else ""


def resource_for(backend: MailboxBackend | type[MailboxBackend], user: SyncUser, kind: str) -> str:
    """What a subscription of this kind watches; "" when not known yet (tasks before a pass)."""
    if kind == SyncKind.TASKS:
        list_id = task_list_id(user)
        return backend.tasks_resource(user.mailbox_email, list_id) if list_id else ""
    if kind == SyncKind.EMAIL:
        return backend.messages_resource(user.mailbox_email)
    return backend.events_resource(user.mailbox_email)


def _hash(client_state: str) -> str:
    return hashlib.sha256(client_state.encode()).hexdigest()


# --- Maintenance (a django-q2 task) -----------------------------------------------------------


def maintain(environment_id: int) -> dict[str, int]:
    """Create, renew, re-create and remove this environment's subscriptions as needed."""
    env = Environment.objects.select_related("settings").filter(pk=environment_id).first()
    counts = {"created": 0, "renewed": 0, "removed": 0, "failed": 0}
    if env is None:
        return counts
    wanted = wanted_rows(env)
    rows = list(GraphSubscription.objects.filter(environment=env).select_related("sync_user"))
    if not wanted and not rows:
        return counts
    backend: MailboxBackend | None = None
    try:
        backend = open_backend(env.settings, Backend.GRAPH) if _graph_in_use(env) else None
        now = timezone.now()
        url = current_notification_url()
        held = set()
        for row in rows:
            if (row.sync_user_id, row.kind) not in wanted or backend is None:
                _remove(backend, row)
                counts["removed"] += 1
                continue
            held.add((row.sync_user_id, row.kind))
            outcome = _keep(backend, row, now, url)
            if outcome:
                counts[outcome] += 1
        for key, user in wanted.items():
            if key not in held and backend is not None:
                counts["created" if _subscribe(backend, user, kind=key[1]) else "failed"] += 1
    except MailboxError as exc:  # the backend could not even be opened: try again next time
        log.warning("Graph subscriptions of environment %s not maintained: %s", environment_id, exc)
    finally:
        if backend is not None:
            backend.close()
    return counts


def _keep(backend: MailboxBackend, row: GraphSubscription, now, url: str) -> str:
    """One wanted row: renew it, re-create it, or retry its creation. Returns the outcome.
    `url` is the notification URL it should have ("" when unknown: kept as it is)."""
    if row.state == PushSubscriptionState.FAILED or (
        row.state == PushSubscriptionState.CREATING and row.updated_at < now - STALE_CREATING
    ):
        return "created" if _subscribe(backend, row.sync_user, row) else "failed"
    if row.state != PushSubscriptionState.ACTIVE:
        return ""  # another worker is creating it
    resource = resource_for(backend, row.sync_user, row.kind)
    if resource and row.resource != resource:
        # The user's mailbox address changed: this subscription watches the old mailbox.
        return "created" if _subscribe(backend, row.sync_user, row) else "failed"
    if url and row.notification_url != url:
        # PUBLIC_BASE_URL changed since it was made (or the row predates the stored URL, so where
        # it posts is unknown: made anew once). Graph's PATCH is documented to move the
        # notificationUrl, not the lifecycleNotificationUrl that moves with it: a new one moves both.
        return "created" if _subscribe(backend, row.sync_user, row) else "failed"
    if row.expires_at and row.expires_at <= now:
        # Expired while nobody renewed it: its notifications are lost, a new one catches up.
        return "created" if _subscribe(backend, row.sync_user, row) else "failed"
    if row.expires_at and row.expires_at - now > RENEW_WITHIN:
        return ""
    return "renewed" if _renew(backend, row) else "failed"


def _subscribe(
    backend: MailboxBackend, user: SyncUser, row: GraphSubscription | None = None, *, kind: str = SyncKind.CALENDAR
) -> bool:
    """Make a new subscription for a user (claiming or creating its row first), then catch up."""
    kind = row.kind if row is not None else kind
    resource = resource_for(backend, user, kind)
    if not resource:
        try:  # a task list before the user's first task pass: asked for once
            resource = backend.tasks_resource(user.mailbox_email, backend.ensure_task_folder(user.mailbox_email))
        except MailboxError as exc:
            log.warning("no Graph task subscription for %s yet: %s", user.mailbox_email, exc)
            return False
    client_state = secrets.token_urlsafe(32)
    claim = {
        "state": PushSubscriptionState.CREATING,
        "client_state_hash": _hash(client_state),
        "subscription_id": "",
        "expires_at": None,
        "error": "",
        "resource": resource,
    }
    if row is None:
        try:
            with transaction.atomic():
                row = GraphSubscription.objects.create(
                    environment_id=user.environment_id, sync_user=user, kind=kind, **claim
                )
        except IntegrityError:
            return False  # another worker claimed it first
        old_id = ""
    else:
        old_id = row.subscription_id
        # Claim an existing row with a conditional update: two maintenance runs never both subscribe.
        if not GraphSubscription.objects.filter(pk=row.pk, updated_at=row.updated_at).update(
            **claim, updated_at=timezone.now()
        ):
            return False
    if old_id:
        _delete_remote(backend, user.mailbox_email, old_id)
    env = Environment.objects.select_related("settings").get(pk=user.environment_id)
    if not _push_environment(env):  # stopped (or push turned off) since this run began
        GraphSubscription.objects.filter(pk=row.pk, client_state_hash=claim["client_state_hash"]).delete()
        return False
    try:
        notification_url, lifecycle_url = notification_urls()
        made = backend.create_subscription(
            user.mailbox_email,
            claim["resource"],
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            client_state=client_state,
            expires_at=timezone.now() + _lifetime(kind),
        )
    except (MailboxError, PushConfigurationError) as exc:
        GraphSubscription.objects.filter(pk=row.pk, client_state_hash=claim["client_state_hash"]).update(
            state=PushSubscriptionState.FAILED, error=f"{CREATE_FAILED}{exc}", updated_at=timezone.now()
        )
        log.warning("no Graph subscription for %s: %s", user.mailbox_email, exc)
        return False
    kept = GraphSubscription.objects.filter(pk=row.pk, client_state_hash=claim["client_state_hash"]).update(
        state=PushSubscriptionState.ACTIVE,
        subscription_id=made.id,
        notification_url=notification_url,
        expires_at=made.expires_at,
        updated_at=timezone.now(),
    )
    if not kept:  # removed meanwhile (the environment stopped): do not leave it behind
        _delete_remote(backend, user.mailbox_email, made.id)
        return False
    # Changes made before the subscription existed were never notified: catch up now.
    passes.push_pass(user.pk, kind)
    return True


def _lifetime(kind: str) -> timedelta:
    return TASKS_LIFETIME if kind == SyncKind.TASKS else LIFETIME


def _renew(backend: MailboxBackend, row: GraphSubscription) -> bool:
    try:
        renewed = backend.renew_subscription(
            row.sync_user.mailbox_email, row.subscription_id, timezone.now() + _lifetime(row.kind)
        )
    except ItemNotFound:
        # Graph no longer has it (removed on its side): a new one, and catch up.
        return _subscribe(backend, row.sync_user, row)
    except MailboxError as exc:
        # Kept as it is: it still works until it expires, and the next run tries again.
        GraphSubscription.objects.filter(pk=row.pk).update(
            error=f"Renewal failed ({exc}); tried again at the next maintenance run.",
            updated_at=timezone.now(),
        )
        log.warning("Graph subscription of %s not renewed: %s", row.sync_user.mailbox_email, exc)
        return False
    GraphSubscription.objects.filter(pk=row.pk, subscription_id=row.subscription_id).update(
        expires_at=renewed.expires_at, error="", updated_at=timezone.now()
    )
    return True


def _remove(backend: MailboxBackend | None, row: GraphSubscription) -> None:
    GraphSubscription.objects.filter(pk=row.pk).delete()
    if row.subscription_id and backend is not None:
        _delete_remote(backend, row.sync_user.mailbox_email, row.subscription_id)


def _delete_remote(backend: MailboxBackend, mailbox: str, subscription_id: str) -> None:
    try:
        backend.delete_subscription(mailbox, subscription_id)
    except MailboxError as exc:
        _not_deleted(mailbox, subscription_id, exc)


def _not_deleted(mailbox: str, subscription_id: str, exc: Exception) -> None:
    # Its notifications name a subscription we no longer know: they are ignored until it expires.
    log.warning(
        "Graph subscription %s of %s not deleted (it expires by itself): %s", subscription_id, mailbox, exc
    )


def renew(subscription_pk: int) -> bool:
    """A reauthorizationRequired lifecycle notification: renew (which reauthorizes) now."""
    row = _row_still_wanted(subscription_pk)
    if row is None or row.state != PushSubscriptionState.ACTIVE:
        return False
    with _graph(row.environment.settings) as backend:
        return _renew(backend, row)


def resubscribe(subscription_pk: int) -> bool:
    """A subscriptionRemoved lifecycle notification: a new subscription, and catch up."""
    row = _row_still_wanted(subscription_pk)
    if row is None:
        return False
    with _graph(row.environment.settings) as backend:
        return _subscribe(backend, row.sync_user, row)


def _row_still_wanted(subscription_pk: int) -> GraphSubscription | None:
    """The row, unless it is gone or its environment no longer wants push."""
    row = (
        GraphSubscription.objects.select_related("sync_user", "environment__settings")
        .filter(pk=subscription_pk)
        .first()
    )
    return row if row is not None and _push_environment(row.environment) else None


@contextmanager
def _graph(sync_settings: SyncSettings) -> Iterator[MailboxBackend]:
    """The environment's Graph backend, closed after use."""
    backend = open_backend(sync_settings, Backend.GRAPH)
    try:
        yield backend
    finally:
        backend.close()


# --- Scheduling (called through `runtime.push` on start and stop) ------------------------------


def maintenance_schedule_name(env: Environment | int) -> str:
    return f"{queue.tick_schedule_name(env)}:graph-push"


def schedule_maintenance(env: Environment) -> None:
    """Start of a Graph environment: maintain now, then every MAINTENANCE_MINUTES."""
    unschedule_maintenance(env)
    if not _graph_in_use(env):
        return
    queue.every_minutes(
        maintenance_schedule_name(env), "synccore.tasks.maintain_graph_subscriptions", env, MAINTENANCE_MINUTES
    )
    queue.enqueue("synccore.tasks.maintain_graph_subscriptions", env.pk)


def unschedule_maintenance(env: Environment) -> None:
    queue.delete_schedule(maintenance_schedule_name(env))


def stopped(env: Environment) -> None:
    """Stop: no more maintenance; a last run removes the subscriptions."""
    unschedule_maintenance(env)
    if GraphSubscription.objects.filter(environment=env).exists():
        queue.enqueue("synccore.tasks.maintain_graph_subscriptions", env.pk)


# --- Following the administrator's changes (settings and sync users saved) ---------------------


def follow(environment_id: int) -> None:
    """Settings or sync users of an environment were saved: if its subscriptions no longer match
    what is wanted, maintain them now (on a worker) instead of at the next hourly run.

    Decided once the change commits, so the check and the worker both see it. Only a running
    environment is maintained: start subscribes, stop removes."""
    transaction.on_commit(lambda: _follow(environment_id))


def _follow(environment_id: int) -> bool:
    env = Environment.objects.select_related("settings").filter(pk=environment_id).first()
    if env is None or env.state != SynchronizerState.RUNNING or not _out_of_step(env):
        return False
    if _graph_in_use(env):
        # Maybe the first mailbox moved to Graph in a hybrid environment: renewals from now on too.
        schedule_maintenance(env)  # which maintains at once
    else:
        queue.enqueue("synccore.tasks.maintain_graph_subscriptions", env.pk)
    return True


def _out_of_step(env: Environment) -> bool:
    """Whether the rows held differ from what is wanted: push or the calendar turned on or off, a
    user added, removed, (de)activated, or whose mailbox address changed, the backend switched —
    or a creation that failed, which the change may have fixed (credentials, permissions), or a
    subscription posting to another address than PUBLIC_BASE_URL gives now."""
    rows = list(
        GraphSubscription.objects.filter(environment=env).values_list(
            "sync_user_id", "resource", "state", "notification_url"
        )
    )
    if any(state == PushSubscriptionState.FAILED for _, _, state, _ in rows):
        return True
    url = current_notification_url()
    if url and any(
        state == PushSubscriptionState.ACTIVE and row_url != url for _, _, state, row_url in rows
    ):
        return True
    rows_by_key = GraphSubscription.objects.filter(environment=env).values_list("sync_user_id", "kind", "resource")
    held = {(user_id, kind): resource for user_id, kind, resource in rows_by_key}
    # A pure function of the address (and the task list's stored id), asked of the backend's
    # class: no connection, no request. A task list not known yet matches whatever is held.
    graph = backend_class(Backend.GRAPH)
    wanted = {key: resource_for(graph, user, key[1]) for key, user in wanted_rows(env).items()}
    if held.keys() != wanted.keys():
        return True
    return any(resource and held[key] != resource for key, resource in wanted.items())


def release(user: SyncUser) -> None:
    """A sync user is being deleted, and its rows with it: delete its subscriptions from Graph on a
    worker once the deletion commits (Graph would otherwise notify them until they expire)."""
    for row in GraphSubscription.objects.filter(sync_user=user).exclude(subscription_id=""):
        args = (row.environment_id, user.mailbox_email, row.subscription_id)
        transaction.on_commit(
            lambda args=args: queue.enqueue("synccore.tasks.delete_graph_subscription", *args)
        )


def delete_subscription(environment_id: int, mailbox: str, subscription_id: str) -> None:
    """Delete one subscription we no longer hold a row for (its user was deleted)."""
    env = Environment.objects.select_related("settings").filter(pk=environment_id).first()
    if env is None or not _graph_in_use(env):
        return  # its credentials are gone: it expires by itself, its notifications are ignored
    try:
        with _graph(env.settings) as backend:
            _delete_remote(backend, mailbox, subscription_id)
    except MailboxError as exc:  # the backend could not even be opened
        _not_deleted(mailbox, subscription_id, exc)


# --- Notifications (the webhook's service functions) -----------------------------------------


def _verified(entries: list[Any], what: str) -> list[tuple[GraphSubscription, dict[str, Any]]]:
    """The entries whose subscription we hold and whose clientState matches it; others logged."""
    entries = [e for e in entries if isinstance(e, dict)]
    ids = {str(e.get("subscriptionId") or "") for e in entries} - {""}
    rows = {
        row.subscription_id: row
        for row in GraphSubscription.objects.filter(subscription_id__in=ids).select_related("sync_user")
    }
    verified = []
    for entry in entries:
        sub_id = str(entry.get("subscriptionId") or "")
        row = rows.get(sub_id)
        state = entry.get("clientState")
        if row is None:
            log.warning("Graph %s for an unknown subscription %r ignored", what, sub_id[:80])
        elif not isinstance(state, str) or not hmac.compare_digest(_hash(state), row.client_state_hash):
            log.warning("Graph %s for subscription %s with a wrong clientState ignored", what, sub_id)
        else:
            verified.append((row, entry))
    return verified


def receive_notifications(entries: list[Any]) -> int:
    """Change notifications: one targeted pass per mailbox and kind named. Returns how many."""
    targets = {(row.sync_user_id, row.kind) for row, _ in _verified(entries, "notification")}
    for user_id, kind in sorted(targets):
        passes.push_pass(user_id, kind)
    return len(targets)


def receive_lifecycle(entries: list[Any]) -> int:
    """Lifecycle notifications: missed → catch up; reauthorizationRequired → renew;
    subscriptionRemoved → a new subscription. Returns how many were acted on."""
    acted = 0
    for row, entry in _verified(entries, "lifecycle notification"):
        event = entry.get("lifecycleEvent")
        if event == "missed":
            acted += passes.push_pass(row.sync_user_id, row.kind)
        elif event == "reauthorizationRequired":
            queue.enqueue("synccore.tasks.renew_graph_subscription", row.pk)
            acted += 1
        elif event == "subscriptionRemoved":
            queue.enqueue("synccore.tasks.resubscribe_graph_subscription", row.pk)
            acted += 1
        else:
            log.info("Graph lifecycle event %r for subscription %s ignored", event, row.subscription_id)
    return acted


# --- Status -------------------------------------------------------------------------------------


def subscription_status(env: Environment) -> dict[tuple[int, str], dict[str, Any]]:
    """(user id, kind) → {"state", "expires_at", "error"} of its subscription."""
    return {
        (row.sync_user_id, row.kind): {
            "state": row.state,
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            "error": row.error,
        }
        for row in GraphSubscription.objects.filter(environment=env)
    }
