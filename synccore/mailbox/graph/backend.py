"""``GraphBackend``: the mailbox interface over Microsoft Graph v1.0.

One object per connection, as the engine wants it: a ``GraphClient`` (the wire: tokens,
throttling, ``$batch``; see ``client.py``) held by composition, and the operations mixed in by
subject — contacts (``contacts.py``), calendar (``calendar.py``), tasks (``tasks.py``), change-notification
subscriptions (``subscriptions.py``) — which all send through that one client, so one backend
counts every request of a pass. Translation to and from Graph's JSON is in ``translation.py``.
"""

from __future__ import annotations

from typing import ClassVar

from synccore.mailbox import base
from synccore.mailbox.base import ConnectionConfig, MailboxBackend, MailboxError, PushStyle
from synccore.mailbox.graph.calendar import CalendarOperations
from synccore.mailbox.graph.client import GraphClient, odata_query, user_path
from synccore.mailbox.graph.contacts import ContactOperations
from synccore.mailbox.graph.messages import MessageOperations
from synccore.mailbox.graph.subscriptions import SubscriptionOperations
from synccore.mailbox.graph.tasks import TaskOperations


class GraphBackend(
    ContactOperations,
    CalendarOperations,
    TaskOperations,
    MessageOperations,
    SubscriptionOperations,
    MailboxBackend,
):
    """A ``MailboxBackend`` over Graph: one client, the operations mixed in by subject."""

    push_style: ClassVar[PushStyle] = "webhook"
    # Microsoft To Do has no extended properties (the sync id rides in a linkedResource).
    PROPERTY_KINDS: ClassVar[frozenset[str]] = frozenset({"contact", "activity"})

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self.client = GraphClient(config)

    @property
    def requests(self) -> int:  # type: ignore[override]
        return self.client.requests

    # Connection check ------------------------------------------------------------------------

    def check(self, mailbox: str) -> list[str]:
        """Get a token, then open the mailbox's contacts folder and its calendar; either is
        enough (an app may hold only one of the two permissions), neither raises."""
        tried = [f"Microsoft Graph {self.client.endpoint} as application {self.config.client_id}"]
        self.client.access_token()
        tried.append(f"got an application token from {self.client.authority}")
        first_error: MailboxError | None = None
        for what, url in (
            ("contacts folder", f"{user_path(mailbox)}/contactFolders/contacts?{odata_query(select='id')}"),
            ("calendar", f"{user_path(mailbox)}/calendar?{odata_query(select='id')}"),
        ):
            try:
                self.client.get(mailbox, url)
            except (base.AccessDenied, base.InvalidItem, base.ItemNotFound) as exc:
                tried.append(f"could not open the {what} of {mailbox}: {exc}")
                first_error = first_error or exc
                continue
            tried.append(f"opened the {what} of {mailbox}")
        if first_error is not None and not any(line.startswith("opened") for line in tried):
            raise first_error
        return tried

    def close(self) -> None:
        self.client.close()
