"""The push listener (K14): streaming subscriptions on the running environments' calendars.

`run_listener` keeps one streaming connection per group of at most 200 calendar users of an
environment (Exchange reads at most 200 subscriptions per GetStreamingEvents; the service account
owns them all). Groups are cut from the users in address order, so each group's first mailbox
is its anchor (Microsoft's affinity recipe, see `mailbox.ews.stream_calendar_changes`). Each group
runs in a thread with connections of its own, and enqueues a targeted calendar pass for the
mailbox that changed. After every (re)connection it enqueues a catch-up pass for each of its
mailboxes, because a stream cannot replay what happened while it was down. A broken stream
reconnects with exponential back-off. Environments that stop, or turn push off, lose their
threads at the next poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import close_old_connections, connection

from synccore import runtime
from synccore.mailbox.base import MailboxError
from synccore.models import Backend, Environment, SynchronizerState, SyncUser

log = logging.getLogger(__name__)

# Subscription ids per GetStreamingEvents request: Exchange's limit.
GROUP_SIZE = 200
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0


def wanted_streams() -> dict[tuple[int, tuple[int, ...]], list[tuple[int, str]]]:
    """(environment id, user ids) → [(user id, mailbox)] for every stream that should be held."""
    streams = {}
    envs = Environment.objects.filter(
        state=SynchronizerState.RUNNING,
        settings__push_enabled=True,
        settings__synchronize_activities=True,
        settings__backend=Backend.EWS,
    )
    for env in envs:
        users = sorted(
            SyncUser.objects.filter(environment=env, active=True, calendar_enabled=True).values_list(
                "pk", "mailbox_email"
            ),
            key=lambda user: (user[1].lower(), user[0]),
        )
        for start in range(0, len(users), GROUP_SIZE):
            group = users[start : start + GROUP_SIZE]
            streams[(env.pk, tuple(pk for pk, _ in group))] = group
    return streams


def listen(environment_id: int, users: list[tuple[int, str]], stop: threading.Event) -> None:
    """Hold one stream until `stop` is set: enqueue passes, reconnect with back-off."""
    from synccore.mailbox.ews import stream_calendar_changes
    from synccore.sync.connection import connection_config

    by_mailbox = {email.lower(): pk for pk, email in users}
    wait = BACKOFF_FIRST_S

    def catch_up() -> None:
        nonlocal wait
        wait = BACKOFF_FIRST_S  # subscribed again: the next break starts a fresh back-off
        for pk, _ in users:
            runtime.push_calendar(pk)
        connection.close()  # the stream may block for minutes: hold no database connection meanwhile

    while not stop.is_set():
        try:
            env = Environment.objects.select_related("settings").get(pk=environment_id)
            config = connection_config(env.settings)
            connection.close()
            # The stream has connections of its own, never the workers' nor another group's.
            for mailbox in stream_calendar_changes(
                config, [email for _, email in users], on_subscribed=catch_up, should_stop=stop.is_set
            ):
                user_id = by_mailbox.get(mailbox.lower())
                if user_id:
                    runtime.push_calendar(user_id)
                    connection.close()
        except (MailboxError, Environment.DoesNotExist) as exc:
            log.warning(
                "push stream for environment %s broke: %s; again in %.0f s", environment_id, exc, wait
            )
            stop.wait(wait)
            wait = min(BACKOFF_MAX_S, wait * 2)
        except Exception:
            log.exception("push stream for environment %s failed; again in %.0f s", environment_id, wait)
            stop.wait(wait)
            wait = min(BACKOFF_MAX_S, wait * 2)
        finally:
            connection.close()


def run_listener(stop: threading.Event, *, poll_s: float = 5.0, on_change: Callable | None = None) -> None:
    """Keep the wanted streams held until `stop` is set."""
    running: dict[tuple, tuple[threading.Thread, threading.Event]] = {}
    try:
        while not stop.is_set():
            wanted = wanted_streams()
            close_old_connections()
            connection.close()
            for key in list(running):
                if key not in wanted:
                    running.pop(key)[1].set()  # environment stopped, push off, users changed
            for key, users in wanted.items():
                if key not in running:
                    ends = threading.Event()
                    thread = threading.Thread(
                        target=listen,
                        args=(key[0], users, ends),
                        name=f"push-{key[0]}-{users[0][1]}",
                        daemon=True,
                    )
                    thread.start()
                    running[key] = (thread, ends)
            if on_change:
                on_change(sorted(running))
            stop.wait(poll_s)
    finally:
        for _, ends in running.values():
            ends.set()
        connection.close()
