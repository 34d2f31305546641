"""Exchange Server on premises through EWS: the only package that imports exchangelib.

- ``client.py``: exchangelib as every operation uses it (request counting, the retry policy,
  errors translated into the ``MailboxError`` family);
- ``translation.py``: contact cards and calendar events ⇄ exchangelib items, recurrences, zones
  and the sync id property;
- ``calendar.py``: the calendar operations; ``tasks.py``: the task operations; ``streaming.py``:
  stream push; all mixed into
  ``EwsBackend`` (``backend.py``).
"""

from __future__ import annotations

from synccore.mailbox.ews.backend import EwsBackend
from synccore.mailbox.ews.translation import recurrence_to_rrule, rrule_to_recurrence

__all__ = ["EwsBackend", "recurrence_to_rrule", "rrule_to_recurrence"]
