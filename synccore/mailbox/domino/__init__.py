"""HCL Domino mail files through the HCL Domino REST API: the only package that talks to Domino.

- ``client.py``: the wire (httpx; a JWT from ``POST {base}/v1/auth``, renewed before it expires
  and once after a 401; Retry-After on 429/503; errors into the mailbox error family);
- ``translation.py``: calendar events ⇄ JSCalendar ``jsevent`` JSON, the change token (ids and
  ``updated`` stamps of the window), the sync id in ``AdditionalFields.CrmSyncId``;
- ``calendar.py``: the calendar operations;
- ``tasks.py``: To Do items as tasks (PIM search for ids and stamps, ``pimitem``, a ``jstask`` in the
  calendar), JSTask ⇄ the engine's task;
- ``backend.py``: ``DominoBackend``, which puts them together. Contacts and e-mail filing are not
  offered (docs/domino.md): they refuse with ``NotSupportedOnDomino``.
"""

from synccore.mailbox.domino.backend import DominoBackend
from synccore.mailbox.domino.client import forget_process_state

__all__ = ["DominoBackend", "forget_process_state"]
