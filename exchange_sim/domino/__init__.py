"""The HCL Domino REST API front end over the same store (``sim.domino``).

One simulated organisation, three doors: what Outlook writes over EWS or Graph is read over Domino and
back. Served on the EWS port over plain HTTP under ``/api`` (the "Domino endpoint" the CLI prints):

    POST /api/v1/auth                                   {"username", "password"} -> {"bearer", "expSeconds", ...}
    GET  /api/pim-v1/calendars?mailboxid=ADDR           the mailbox's calendars ("default")
    GET  /api/pim-v1/calendar/default?mailboxid=ADDR&startdate=YYYY-MM-DD&enddate=YYYY-MM-DD
    POST /api/pim-v1/calendar/default?mailboxid=ADDR&send=true|false      JSCalendar jsevent
    GET|PUT|DELETE /api/pim-v1/calendar/default/{uid}?mailboxid=ADDR[&send=...]
    POST /api/pim-v1/search?mailboxid=ADDR              DQL "Form = 'Task'": To Do ids and stamps
    GET|PUT /api/pim-v1/pimitem/{unid}?mailboxid=ADDR   a To Do as a JSCalendar jstask (GET: an entry too)
    (a To Do is created by posting a jstask to the calendar, and deleted there: todo.py)

Entries are JSCalendar ``jsevent`` objects (RFC 8984, as openapi.pim.json shows them); the entry id is its
``uid``. The product's sync id rides in ``AdditionalFields.CrmSyncId`` (the Notes item the REST API writes
for ``AdditionalFields``), the same value as the EWS/Graph extended property ``CrmSyncId``. Every write
moves ``updated`` (strictly, even under a frozen clock: the server stamps each write later than the last).
Errors are ``{"status", "message"}`` with the HTTP status. Knobs::

    sim.domino.expire_tokens()            # every issued JWT answers 401 from now on
    sim.domino.token_seconds = 60         # lifetime of a new JWT (expSeconds), on the simulator clock
    sim.faults.http_503(operation="domino.calendar.list")   # faults by operation ("domino.auth", ...)

Deviations: a series is one ``recurrenceRules`` rule, its changed and removed occurrences its
``recurrenceOverrides`` (an added occurrence answers 501); To Do items through the generic PIM routes
(todo.py: v1.0.2 has none of their own); no contacts or mail;
``timeZone`` is answered as an IANA name (real servers may answer a Notes zone string).
"""

from exchange_sim.domino.frontend import DOMINO_PREFIX, DominoFrontEnd

__all__ = ["DOMINO_PREFIX", "DominoFrontEnd"]
