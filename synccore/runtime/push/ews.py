"""Push over EWS (K14): the listener's streaming subscriptions on the running environments' mailboxes.

`run_listener` keeps one streaming connection per group of at most 200 sync users of an
environment (Exchange reads at most 200 subscriptions per GetStreamingEvents; the service account
owns them all). Each group's first mailbox in address order is its anchor (Microsoft's affinity
recipe, see `MailboxBackend.stream_changes` and its EWS implementation). Each user's one
subscription watches the kinds it is synchronized for that push carries (`PUSHED_KINDS`: the
calendar, the Tasks folder with task sync on (T1), the mail folders with e-mail filing on (E1));
the folder of each event tells its kind. Groups keep their members while they run, so a user who
joins or leaves, or whose kinds change (calendar, tasks or filing turned on or off, for the
environment or the user), restarts one group, not every group of the environment. Each group runs
in a thread with connections of its own, and enqueues a targeted pass of the kind that changed for
the mailbox that changed. After every (re)connection it enqueues a catch-up pass of each watched
kind for each of its mailboxes, because a stream cannot replay what happened while it was down.
A broken stream reconnects with exponential back-off. Environments that stop, or turn push off,
lose their threads at the next poll. A mailbox that cannot be subscribed to (no such
mailbox, no rights on it) is left out of its group's stream, which goes on without it, and streams
in a group of its own that retries with a back-off of its own (O3): one missing mailbox never
costs the others their push.

The listener publishes the state of each group's stream in the shared cache at every poll;
`stream_status` turns it into the status's per-user "push" entry (the same shape as a Graph
subscription's), and says so when no listener is running at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from django.core.cache import cache
from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from synccore.mailbox.base import AccessDenied, MailboxBackend, MailboxError, MailboxNotFound
from synccore.models import Backend, Environment, PushSubscriptionState, SynchronizerState, SyncKind, SyncUser
from synccore.runtime import leases, passes
from synccore.sync.connection import open_backend
from synccore.sync.readable import explain

log = logging.getLogger(__name__)

# Subscription ids per GetStreamingEvents request: Exchange's limit.
GROUP_SIZE = 200
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
# A mailbox that cannot be subscribed to (no such mailbox, no rights) streams alone and is tried
# again less often: it is synchronized by pull meanwhile, and its state says so.
BACKOFF_ALONE_MAX_S = 300.0


# The kinds a stream carries: contacts flow one way (CRM → Exchange), as over Graph.
PUSHED_KINDS = (SyncKind.CALENDAR, SyncKind.TASKS, SyncKind.EMAIL)

# A member of a stream: (user id, mailbox, the kinds its subscription watches).
Member = tuple[int, str, tuple[str, ...]]


def pushed_kinds(user: SyncUser) -> tuple[str, ...]:
    """The kinds of a user that its stream watches now (each on for the environment and the user)."""
    return tuple(kind.value for kind in PUSHED_KINDS if passes.runnable_kind(user, kind))


def _stream_users(env: Environment) -> dict[int, tuple[str, tuple[str, ...]]]:
    """user id → (mailbox, kinds) of every user of a pushing environment that a stream watches."""
    # A hybrid environment: only the mailboxes reached over EWS (H1); Graph's webhooks take the rest.
    users = (
        SyncUser.objects.filter(environment=env, active=True)
        .filter(SyncUser.on_backend(Backend.EWS))
        .select_related("environment__settings")
    )
    watched = {user.pk: (user.mailbox_email, pushed_kinds(user)) for user in users}
    return {pk: found for pk, found in watched.items() if found[1]}


def _pushing() -> Q:
    """Running environments with push on and some kind that push carries on."""
    return Q(state=SynchronizerState.RUNNING, settings__push_enabled=True) & (
        Q(settings__synchronize_activities=True)
        | Q(settings__synchronize_tasks=True)
        | Q(settings__file_emails=True)
    )


def wanted_streams(
    held: Iterable[tuple[int, tuple[int, ...]]] = (),
    isolated: Iterable[int] = (),
) -> dict[tuple[int, tuple[int, ...]], list[Member]]:
    """(environment id, user ids) → [(user id, mailbox, kinds)] for every stream that should be held.

    ``held`` are the streams held now: their groups are kept as they are, less the users who left,
    so a user who joins or leaves restarts (and catches up) one group, not all of them.
    ``isolated`` are users whose mailbox could not be subscribed to: each streams on its own (and
    retries with its own back-off), out of the group it shared (O3).
    """
    isolated = set(isolated)
    streams = {}
    envs = Environment.objects.filter(_pushing()).select_related("settings")
    held_by_env: dict[int, list[tuple[int, ...]]] = {}
    for environment_id, user_ids in held:
        held_by_env.setdefault(environment_id, []).append(user_ids)
    for env in envs:
        users = _stream_users(env)
        addresses = {pk: mailbox for pk, (mailbox, _) in users.items()}
        for group in plan_groups(addresses, held_by_env.get(env.pk, []), isolated):
            streams[(env.pk, tuple(pk for pk, _ in group))] = [
                (pk, email, users[pk][1]) for pk, email in group
            ]
    return streams


def plan_groups(
    users: dict[int, str], held: list[tuple[int, ...]], isolated: Iterable[int] = ()
) -> list[list[tuple[int, str]]]:
    """Groups of at most GROUP_SIZE users, each in address order (its first is the anchor).

    Held groups keep their members that are still wanted; newcomers, in address order, fill the
    groups with room, then new groups. An isolated user has a group of its own, which no one joins.
    """
    isolated = {pk for pk in isolated if pk in users}
    alone = [[pk] for pk in sorted(isolated)]
    groups = [[pk for pk in group if pk in users and pk not in isolated] for group in held]
    groups = [group for group in groups if group]
    placed = isolated | {pk for group in groups for pk in group}
    newcomers = sorted((pk for pk in users if pk not in placed), key=lambda pk: (users[pk].lower(), pk))
    for pk in newcomers:
        room = next((group for group in groups if len(group) < GROUP_SIZE), None)
        if room is None:
            room = []
            groups.append(room)
        room.append(pk)
    return [
        sorted(((pk, users[pk]) for pk in group), key=lambda u: (u[1].lower(), u[0]))
        for group in groups + alone
    ]


def listen(
    environment_id: int,
    users: list[Member],
    stop: threading.Event,
    report: Callable[[str, str], None] = lambda state, error: None,
    isolate: Callable[[int, str], None] | None = None,
) -> None:
    """Hold one stream until `stop` is set: enqueue passes, reconnect with back-off.

    ``report(state, error)`` is told when the stream is subscribed ("active") and when it broke
    ("failed", with the reason and when it tries again). ``isolate(user id, reason)`` is told of a
    member whose mailbox could not be subscribed to: the stream goes on without it, and the
    listener gives it a stream of its own at its next poll. A stream of one mailbox that cannot be
    subscribed to waits up to BACKOFF_ALONE_MAX_S between tries."""
    by_mailbox = {email.lower(): pk for pk, email, _ in users}
    wait = BACKOFF_FIRST_S
    most = BACKOFF_ALONE_MAX_S if len(users) == 1 else BACKOFF_MAX_S

    def unreachable(mailbox: str, exc: MailboxError) -> None:
        user_id = by_mailbox.get(mailbox.lower())
        if user_id and isolate is not None:
            isolate(user_id, _no_push(exc, mailbox, 0))

    def catch_up() -> None:
        nonlocal wait
        wait = BACKOFF_FIRST_S  # subscribed again: the next break starts a fresh back-off
        report(PushSubscriptionState.ACTIVE, "")
        for pk, _, kinds in users:
            for kind in kinds:
                passes.push_pass(pk, kind)
        connection.close()  # the stream may block for minutes: hold no database connection meanwhile

    while not stop.is_set():
        backend: MailboxBackend | None = None
        try:
            env = Environment.objects.select_related("settings").get(pk=environment_id)
            backend = open_backend(env.settings, Backend.EWS)
            connection.close()
            # The stream has connections of its own, never the workers' nor another group's.
            for mailbox, kind in backend.stream_changes(
                {email: kinds for _, email, kinds in users},
                on_subscribed=catch_up,
                should_stop=stop.is_set,
                on_unreachable=unreachable if isolate is not None else None,
            ):
                user_id = by_mailbox.get(mailbox.lower())
                if user_id:
                    passes.push_pass(user_id, kind)
                    connection.close()
        except (MailboxNotFound, AccessDenied) as exc:  # a stream of one mailbox that cannot be watched
            log.warning("no push for %s: %s; again in %.0f s", users[0][1], exc, wait)
            report(PushSubscriptionState.FAILED, _no_push(exc, users[0][1], wait))
            stop.wait(wait)
            wait = min(most, wait * 2)
        except (MailboxError, Environment.DoesNotExist) as exc:
            log.warning(
                "push stream for environment %s broke: %s; again in %.0f s", environment_id, exc, wait
            )
            report(PushSubscriptionState.FAILED, f"The stream broke: {exc} Reconnecting in {wait:.0f} s.")
            stop.wait(wait)
            wait = min(most, wait * 2)
        except Exception as exc:
            log.exception("push stream for environment %s failed; again in %.0f s", environment_id, wait)
            report(PushSubscriptionState.FAILED, f"The stream failed: {exc} Reconnecting in {wait:.0f} s.")
            stop.wait(wait)
            wait = min(most, wait * 2)
        finally:
            if backend is not None:
                backend.close()
            connection.close()


def _no_push(exc: MailboxError, mailbox: str, wait: float) -> str:
    again = f" Push is tried again in {wait:.0f} s." if wait else " Push is tried again on its own."
    return f"No push for this mailbox (it is synchronized by pull only): {explain(exc, mailbox=mailbox).sentence}{again}"


def run_listener(stop: threading.Event, *, poll_s: float = 5.0, on_change: Callable | None = None) -> None:
    """Keep the wanted streams held until `stop` is set.

    A member whose mailbox could not be subscribed to is isolated: its group streams on without it
    (restarted once, at the next poll), and it streams alone, retrying with a back-off of its own,
    until its stream is subscribed; from then on its group is one like any other, which newcomers
    may join. A re-addressed user's group restarts with the new address."""
    running: dict[tuple, tuple[threading.Thread, threading.Event, list[Member]]] = {}
    states: dict[tuple, dict[str, str]] = {}
    # User id → (the address it failed with, why), written by the streams' threads.
    isolated: dict[int, tuple[str, str]] = {}
    try:
        while not stop.is_set():
            for key, state in list(states.items()):
                if len(key[1]) == 1 and state["state"] == PushSubscriptionState.ACTIVE:
                    isolated.pop(key[1][0], None)  # its mailbox streams again: back to a group
            wanted = wanted_streams(running, isolated)
            close_old_connections()
            connection.close()
            for key in list(running):
                if key not in wanted or running[key][2] != wanted[key]:
                    # Environment stopped, push off, users changed (joined, left, re-addressed,
                    # a kind turned on or off): the group subscribes anew.
                    running.pop(key)[1].set()
                    states.pop(key, None)
            for pk, (mailbox, _) in list(isolated.items()):
                if not any((pk, mailbox) == member[:2] for users in wanted.values() for member in users):
                    isolated.pop(pk)  # gone, or re-addressed: planned as anyone else from now on
            for key, users in wanted.items():
                if key not in running:
                    ends = threading.Event()
                    alone = isolated.get(users[0][0]) if len(users) == 1 else None
                    states[key] = (
                        _state(PushSubscriptionState.FAILED, alone[1])
                        if alone
                        else _state(PushSubscriptionState.CREATING, "")
                    )
                    thread = threading.Thread(
                        target=listen,
                        args=(key[0], users, ends, _reporter(states, key)),
                        kwargs={"isolate": _isolator(isolated, users) if len(users) > 1 else None},
                        name=f"push-{key[0]}-{users[0][1]}",
                        daemon=True,
                    )
                    thread.start()
                    running[key] = (thread, ends, users)
            _publish(wanted, states, poll_s)
            if on_change:
                on_change(sorted(running))
            stop.wait(poll_s)
    finally:
        for _, ends, _ in running.values():
            ends.set()
        _unpublish({key[0] for key in running})
        connection.close()


# --- What the status shows (published through the shared cache) --------------------------------

LISTENER_KEY = "synccore:ews-push:listener"


def _env_key(environment_id: int) -> str:
    return f"synccore:ews-push:{environment_id}"


def _state(state: str, error: str) -> dict[str, str]:
    return {"state": str(state), "error": error, "since": timezone.now().isoformat()}


def _isolator(isolated: dict[int, tuple[str, str]], users: list[Member]) -> Callable[[int, str], None]:
    addresses = {pk: email for pk, email, _ in users}

    def isolate(user_id: int, reason: str) -> None:
        isolated[user_id] = (addresses[user_id], reason)

    return isolate


def _reporter(states: dict[tuple, dict[str, str]], key: tuple) -> Callable[[str, str], None]:
    def report(state: str, error: str) -> None:
        states[key] = _state(state, error)

    return report


def _publish(wanted: dict[tuple, list[Member]], states: dict[tuple, dict[str, str]], poll_s: float) -> None:
    """Each environment's streams, per user, for the status; they expire if the listener dies."""
    ttl = max(30.0, 3 * poll_s)
    by_env: dict[int, dict[int, dict[str, str]]] = {}
    for key, users in wanted.items():
        state = states.get(key) or _state(PushSubscriptionState.CREATING, "")
        by_env.setdefault(key[0], {}).update({pk: state for pk, _, _ in users})
    seen = {"listener": leases.worker_name(), "seen_at": timezone.now().isoformat()}
    try:
        cache.set(LISTENER_KEY, seen, ttl)
        for environment_id, users in by_env.items():
            cache.set(_env_key(environment_id), {**seen, "users": users}, ttl)
    except Exception:  # the listener's work does not depend on the status being written
        log.warning("could not publish the push streams' state", exc_info=True)


def _unpublish(environment_ids: set[int]) -> None:
    try:
        cache.delete_many([LISTENER_KEY, *(_env_key(pk) for pk in environment_ids)])
    except Exception:
        log.warning("could not clear the push streams' state", exc_info=True)


def stream_status(env: Environment) -> dict[tuple[int, str], dict[str, Any]]:
    """(user id, kind) → {"state", "expires_at", "error"} of its EWS stream, as published: one
    stream per user carries each of its pushed kinds, so they share its state."""
    s = env.settings
    if not (
        s.push_enabled
        and (s.synchronize_activities or s.synchronize_tasks or s.file_emails)
        and env.state == SynchronizerState.RUNNING
    ):
        return {}
    try:
        published = cache.get(_env_key(env.pk)) or {}
        listener = cache.get(LISTENER_KEY)
    except Exception:
        log.warning("could not read the push streams' state", exc_info=True)
        return {}
    out = {}
    for user_id, (_, kinds) in _stream_users(env).items():
        entry = (published.get("users") or {}).get(user_id)
        if entry is None and listener:
            entry = _state(PushSubscriptionState.CREATING, "")
        elif entry is None:
            entry = _state(
                PushSubscriptionState.FAILED,
                "No push listener is running (python manage.py run_push_listener): pull only.",
            )
        for kind in kinds:
            out[(user_id, kind)] = {"state": entry["state"], "expires_at": None, "error": entry["error"]}
    return out
