"""Exchange Online through Microsoft Graph v1.0: the only package that talks to Graph.

- ``client.py``: the wire (msal tokens, Retry-After per app and mailbox, transport retries,
  ``$batch``), see docs/exchange-online.md;
- ``translation.py``: contact cards and calendar events ⇄ Graph JSON, recurrences, zones, the
  sync id property (the named extended property of base.PROPERTY_SET_ID, as over EWS) and the
  calendar's delta tokens;
- ``contacts.py``, ``calendar.py``, ``subscriptions.py``: the backend operations;
- ``backend.py``: ``GraphBackend``, which puts them together.
"""

from synccore.mailbox.base import Subscription
from synccore.mailbox.graph.backend import GraphBackend
from synccore.mailbox.graph.client import BATCH_LIMIT, forget_process_state
from synccore.mailbox.graph.translation import CalendarToken, recurrence_to_rrule, rrule_to_recurrence

__all__ = [
    "BATCH_LIMIT",
    "CalendarToken",
    "GraphBackend",
    "Subscription",
    "forget_process_state",
    "recurrence_to_rrule",
    "rrule_to_recurrence",
]
