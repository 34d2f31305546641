"""Exchange Server on premises through EWS: the only package that imports exchangelib.

- ``client.py``: exchangelib as every operation uses it (request counting, the retry policy,
  errors translated into the ``MailboxError`` family);
- ``translation.py``: contact cards and calendar events ⇄ exchangelib items, recurrences, zones
  and the sync id property;
- ``calendar.py``: the calendar operations; ``streaming.py``: stream push; both mixed into
  ``EwsBackend`` (``backend.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from synccore.mailbox.base import ConnectionConfig
from synccore.mailbox.ews.backend import EwsBackend
from synccore.mailbox.ews.translation import recurrence_to_rrule, rrule_to_recurrence


def stream_calendar_changes(
    config: ConnectionConfig,
    mailboxes: Sequence[str],
    *,
    on_subscribed: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    connection_timeout_minutes: int = 1,
) -> Iterator[str]:
    """The stream of ``MailboxBackend.stream_calendar_changes``, from a config: kept until the push
    listener calls the interface (``backend.stream_calendar_changes(mailboxes, ...)``)."""
    yield from EwsBackend(config).stream_calendar_changes(
        mailboxes,
        on_subscribed=on_subscribed,
        should_stop=should_stop,
        connection_timeout_minutes=connection_timeout_minutes,
    )


__all__ = ["EwsBackend", "recurrence_to_rrule", "rrule_to_recurrence", "stream_calendar_changes"]
