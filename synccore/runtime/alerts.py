"""Alerts (O6): e-mail and an outgoing webhook when something an administrator must know changes.

`observe` compares what an environment looks like now with the state each subject was last
decided on (``AlertState``) and tells only the changes: a user's kind turning held or failing, or
recovering after that; the environment failing, degrading or recovering; a mailbox's push lost or
back; the client secret about to expire or expired; items starting to need attention. The rows
are claimed by conditional updates, so two workers observing at once tell a change once. Nothing
is said about a state first seen healthy, and nothing twice while a state lasts: a pass that
fails again in the same way sends nothing.

The workers observe after every pass, at every tick of a running environment, after a failed
start and once a day (the prune) for every environment. Messages go out on a worker
(`deliver`, the task ``synccore.tasks.deliver_alerts``): one e-mail per observation listing its
changes, through Django's e-mail settings (``EMAIL_*``), and one JSON POST per change to the
environment's webhook (pinned keys: environment, event, user, kind, state, reason, at). A channel
that fails is tried again later (RETRY_MINUTES), and each delivery is recorded in the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import date, timedelta

import httpx
from django.apps import apps
from django.conf import settings as django_settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from synccore.models import (
    AlertState,
    Environment,
    ItemLink,
    LinkState,
    PushSubscriptionState,
    SynchronizerState,
    SyncUser,
)
from synccore.runtime import passes, push, queue
from synccore.sync import runs
from synccore.sync.service import kind_enabled

log = logging.getLogger(__name__)

DELIVER = "synccore.tasks.deliver_alerts"
# Minutes before each further try of a channel that failed; then it is given up (and audited).
RETRY_MINUTES = (1, 5, 30)
SECRET_WARNING_DAYS = 30
WEBHOOK_TIMEOUT_S = 10.0
ATTENTION_ITEMS = (LinkState.FAILED, LinkState.SKIPPED, LinkState.HELD, LinkState.NOT_FOUND)

# The events (the webhook's "event"), with the sentence that heads the e-mail's line.
EVENTS = {
    "user_unhealthy": "needs attention",
    "user_recovered": "is healthy again",
    "environment_failed": "has failed",
    "environment_degraded": "is degraded: some users are not healthy",
    "environment_recovered": "is healthy again",
    "push_lost": "lost push (it is synchronized by pull only)",
    "push_restored": "has push again",
    "secret_expiring": "is about to expire",
    "secret_expired": "has expired",
    "items_need_attention": "need attention",
    "test": "sent a test alert",
}
_BAD_USER = (runs.HELD, runs.FAILING)


# --- What an environment looks like now ----------------------------------------------------------


def _environment_state(env: Environment, troubled: int) -> tuple[str, str]:
    """The environment's health, ``troubled`` of its users' kinds needing attention."""
    if env.state == SynchronizerState.FAILED:
        return "failed", env.state_reason
    if env.state != SynchronizerState.RUNNING:
        return "stopped", ""
    if troubled:
        return "degraded", f"{troubled} of the users' kinds are not healthy (see Needs attention)."
    return "healthy", ""


def secret_state(env: Environment, today: date) -> tuple[str, str]:
    """The client secret's state (unwatched, valid, expiring, expired) and what to do about it."""
    s = env.settings
    expires = s.oauth_client_secret_expires_on
    if expires is None or not s.oauth_client_secret:
        return "unwatched", ""
    if expires <= today:
        return "expired", f"The client secret expired on {expires:%Y-%m-%d}: make a new one and enter it in Settings."
    if expires - today <= timedelta(days=SECRET_WARNING_DAYS):
        return "expiring", (
            f"The client secret expires on {expires:%Y-%m-%d} ({(expires - today).days} days): "
            "make a new one in Entra ID and enter it (and its expiry date) in Settings."
        )
    return "valid", ""


def current_states(env: Environment) -> dict[str, dict[str, str]]:
    """subject → {"state", "reason", "user", "kind"} of everything alerts watch."""
    users = list(SyncUser.objects.filter(environment=env).order_by("pk"))
    out = _user_states(env, users)
    troubled = sum(1 for entry in out.values() if entry["state"] in runs.NEEDS_ATTENTION)
    emails = {user.pk: user.mailbox_email for user in users}
    for (user_id, kind), entry in push.status_by_user(env).items():
        if user_id in emails:
            out[f"push:{user_id}:{kind}"] = {
                "state": str(entry["state"]),
                "reason": str(entry.get("error") or ""),
                "user": emails[user_id],
                "kind": kind,
            }
    out["environment"] = _environment_entry(env, troubled)
    state, reason = secret_state(env, timezone.localdate())
    out["secret"] = {"state": state, "reason": reason, "user": "", "kind": ""}
    out["items"] = _items_entry(env)
    return out


def states_after_passes(env: Environment, user_ids: Collection[int]) -> dict[str, dict[str, str]]:
    """What passes of ``user_ids`` can have changed: their users' kinds, the environment's health
    (every other user's kinds as last observed) and the items needing attention. Not every user
    of the environment: a tick's tasks of PASS_THREADS mailboxes would each read them all."""
    users = list(SyncUser.objects.filter(environment=env, pk__in=list(user_ids)).order_by("pk"))
    out = _user_states(env, users)
    others = (
        AlertState.objects.filter(environment=env, subject__startswith="user:", state__in=runs.NEEDS_ATTENTION)
        .exclude(subject__in=list(out))
        .count()
    )
    troubled = others + sum(1 for entry in out.values() if entry["state"] in runs.NEEDS_ATTENTION)
    out["environment"] = _environment_entry(env, troubled)
    out["items"] = _items_entry(env)
    return out


def _user_states(env: Environment, users: list[SyncUser]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for user in users:
        user.environment = env
        for kind in passes.KINDS:
            state = runs.kind_state(user, kind.value, kind_enabled(user, kind))
            out[f"user:{user.pk}:{kind.value}"] = {
                "state": str(state["state"]),
                "reason": str(state["reason"] or ""),
                "user": user.mailbox_email,
                "kind": kind.value,
            }
    return out


def _environment_entry(env: Environment, troubled: int) -> dict[str, str]:
    state, reason = _environment_state(env, troubled)
    return {"state": state, "reason": reason, "user": "", "kind": ""}


def _items_entry(env: Environment) -> dict[str, str]:
    items = ItemLink.objects.filter(environment=env, state__in=ATTENTION_ITEMS).count()
    return {
        "state": "some" if items else "none",
        "reason": f"{items} items could not be synchronized (see Needs attention)." if items else "",
        "user": "",
        "kind": "",
    }


def _event(subject: str, state: str, alerted: bool) -> tuple[str, bool]:
    """(event or "", alerted afterwards) for a subject entering ``state``."""
    what = subject.split(":", 1)[0]
    if what == "user":
        if state in _BAD_USER:
            return "user_unhealthy", True
        return ("user_recovered", False) if alerted and state == runs.HEALTHY else ("", alerted)
    if what == "push":
        if state == PushSubscriptionState.FAILED:
            return "push_lost", True
        return ("push_restored", False) if alerted and state == PushSubscriptionState.ACTIVE else ("", alerted)
    if what == "environment":
        if state in ("failed", "degraded"):
            return f"environment_{state}", True
        return ("environment_recovered", False) if alerted and state == "healthy" else ("", alerted)
    if what == "secret":
        if state in ("expiring", "expired"):
            return f"secret_{state}", True
        return "", False
    if what == "items":
        return ("items_need_attention", True) if state == "some" else ("", False)
    return "", alerted


# --- Observing: one message per change of state --------------------------------------------------


def observe(environment_id: int, user_ids: Collection[int] | None = None) -> list[dict[str, str]]:
    """Tell the changes since the last observation (enqueued for delivery); returns them. With
    ``user_ids`` (the mailboxes whose passes just ran), only what those passes can have changed
    (`states_after_passes`); the tick observes everything."""
    env = Environment.objects.select_related("settings").filter(pk=environment_id).first()
    if env is None:
        return []
    now = timezone.now()
    if user_ids is None:
        current = current_states(env)
        rows = AlertState.objects.filter(environment=env)
    else:
        current = states_after_passes(env, user_ids)
        rows = AlertState.objects.filter(environment=env, subject__in=list(current))
    stored = {row.subject: row for row in rows}
    events = []
    for subject, entry in current.items():
        row = stored.pop(subject, None)
        state = entry["state"]
        if row is not None and row.state == state:
            continue
        event, alerted = _event(subject, state, row.alerted if row else False)
        if row is None:
            try:
                with transaction.atomic():
                    AlertState.objects.create(
                        environment=env, subject=subject, state=state, alerted=alerted, changed_at=now
                    )
            except IntegrityError:
                continue  # another worker saw it first, and told it
        elif not AlertState.objects.filter(pk=row.pk, state=row.state, alerted=row.alerted).update(
            state=state, alerted=alerted, changed_at=now
        ):
            continue  # another worker claimed this change
        if event:
            events.append(
                {
                    "environment": env.name,
                    "event": event,
                    "user": entry["user"],
                    "kind": entry["kind"],
                    "state": state,
                    "reason": entry["reason"],
                    "at": now.isoformat(),
                }
            )
    if stored and user_ids is None:  # users deleted or gone out of push: forgotten without a word
        AlertState.objects.filter(pk__in=[row.pk for row in stored.values()]).delete()
    s = env.settings
    if events and (s.alert_addresses() or s.alert_webhook_url):
        channels = (["email"] if s.alert_addresses() else []) + (["webhook"] if s.alert_webhook_url else [])
        queue.enqueue(DELIVER, env.pk, events, channels, 0)
    return events


def send_test(environment_id: int, requested_by: str) -> list[str]:
    """A test alert on every channel of the environment, sent on a worker; returns the channels
    ([] when the environment has neither addresses nor a webhook)."""
    env = Environment.objects.select_related("settings").get(pk=environment_id)
    s = env.settings
    channels = (["email"] if s.alert_addresses() else []) + (["webhook"] if s.alert_webhook_url else [])
    if channels:
        event = {
            "environment": env.name,
            "event": "test",
            "user": "",
            "kind": "",
            "state": "test",
            "reason": f"Asked for by {requested_by or 'an administrator'}: alerts of this environment reach you.",
            "at": timezone.now().isoformat(),
        }
        queue.enqueue(DELIVER, env.pk, [event], channels, 0)
    return channels


def observe_quietly(environment_id: int, user_ids: Collection[int] | None = None) -> None:
    """`observe` where a failure must not spoil the caller's work (a pass, a tick)."""
    try:
        observe(environment_id, user_ids)
    except Exception:
        log.exception("alerts of environment %s not observed", environment_id)


def observe_all() -> int:
    """Every environment (the daily prune): a secret's expiry is told even while stopped."""
    count = 0
    for environment_id in Environment.objects.values_list("pk", flat=True):
        count += len(observe(environment_id))
    return count


# --- Delivering ---------------------------------------------------------------------------------


def _line(event: dict[str, str]) -> str:
    who = {
        "secret_expiring": "The client secret",
        "secret_expired": "The client secret",
        "items_need_attention": "Items",
    }.get(event["event"]) or (
        f"{event['user']} ({event['kind']})" if event["user"] else f"Environment {event['environment']}"
    )
    line = f"{who} {EVENTS.get(event['event'], event['event'])} [{event['state']}]"
    return f"{line}: {event['reason']}" if event["reason"] else line


def message(environment_id: int, events: list[dict[str, str]]) -> tuple[str, str]:
    """(subject, body) of the e-mail telling these events."""
    first = events[0]
    more = f" (and {len(events) - 1} more)" if len(events) > 1 else ""
    subject = f"[CRM sync] {first['environment']}: {_line(first).split(':', 1)[0]}{more}"
    base = str(getattr(django_settings, "PUBLIC_BASE_URL", "") or "").rstrip("/")
    body = "\n".join(
        [
            f"What changed in the synchronizer of {first['environment']}:",
            "",
            *(f"- {event['at'][:19].replace('T', ' ')} UTC  {_line(event)}" for event in events),
            "",
            f"The environment in the console: {base}/environments/{environment_id}/" if base else "",
            "You receive this because your address is among the environment's alert e-mail addresses.",
        ]
    )
    return subject[:250], body


def deliver(environment_id: int, events: list[dict[str, str]], channels: list[str], attempt: int = 0) -> dict:
    """Send the events on each channel; a channel that fails is tried again later, up to
    len(RETRY_MINUTES) more times. Returns {channel: "" or the error}."""
    env = Environment.objects.select_related("settings").filter(pk=environment_id).first()
    if env is None or not events:
        return {}
    s = env.settings
    outcome: dict[str, str] = {}
    for channel in channels:
        try:
            if channel == "email":
                addresses = s.alert_addresses()
                if addresses:
                    subject, body = message(env.pk, events)
                    send_mail(subject, body, None, addresses, fail_silently=False)
            elif channel == "webhook" and s.alert_webhook_url:
                with httpx.Client(timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False) as client:
                    for event in events:
                        client.post(s.alert_webhook_url, json=event).raise_for_status()
            outcome[channel] = ""
        except Exception as exc:  # any failure of the mail server or the receiver: tried again
            outcome[channel] = f"{type(exc).__name__}: {exc}"[:240]
            log.warning("alert %s of environment %s not delivered: %s", channel, env.name, exc)
    failed = [channel for channel, error in outcome.items() if error]
    if failed and attempt < len(RETRY_MINUTES):
        _retry_later(env.pk, events, failed, attempt + 1)
    _audit(env, events, outcome, attempt)
    return outcome


def _retry_later(environment_id: int, events: list[dict[str, str]], channels: list[str], attempt: int) -> None:
    from django_q.models import Schedule  # django_q's models need the app registry (see queue)

    Schedule.objects.create(
        name=f"{queue.tick_schedule_name(environment_id)}:alert:{timezone.now().timestamp()}",
        func=DELIVER,
        args=repr((environment_id, events, channels, attempt)),
        schedule_type=Schedule.ONCE,
        repeats=-1,
        next_run=timezone.now() + timedelta(minutes=RETRY_MINUTES[attempt - 1]),
    )


def _audit(env: Environment, events: list[dict[str, str]], outcome: dict[str, str], attempt: int) -> None:
    # The audit log belongs to the console; written without importing the console (as the prune).
    if not apps.is_installed("syncadmin"):
        return
    try:
        entry = apps.get_model("syncadmin", "AuditEntry")
    except LookupError:
        return
    errors = "; ".join(f"{channel}: {error}" for channel, error in outcome.items() if error)
    entry.objects.create(
        username="synchronizer",
        environment=env,
        action="alert_sent",
        target=", ".join(sorted({e["event"] for e in events}))[:255],
        # Plain text, not lists: the audit table reads a two-item list as "before → after".
        changes={
            "events": "; ".join(_line(e) for e in events[:50]),
            "channels": ", ".join(sorted(outcome)),
            "attempt": attempt + 1,
        },
        via="worker",
        outcome=errors[:255],
    )
