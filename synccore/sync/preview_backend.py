"""A mailbox that records writes instead of sending them: the Exchange side of a preview (P1).

Reads go to the real mailbox, so a preview decides from what is there; every write is kept as a
``Write`` and answered as the real write would be expected to answer (a new id for a create, the
same id for an update, success for a delete), so the pass goes on to its follow-ups (an imported
meeting's UID, a link made after a create) just as it would. Nothing leaves this object but reads.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from synccore.mailbox.base import (
    CalendarEvent,
    ChangePage,
    ContactCard,
    ItemNotFound,
    ItemResult,
    MailboxBackend,
    MailboxError,
    MailFolder,
    MailMessage,
    MessagePage,
    RemoteRef,
    TaskItem,
)

# Ids this backend makes up; never sent to the server.
PREVIEW_PREFIX = "preview:"

INVITATION = "invitation"
UPDATE = "update"
CANCELLATION = "cancellation"


@dataclass
class Message:
    """A meeting message a write would send."""

    kind: str  # invitation / update / cancellation
    subject: str
    organizer: str
    recipients: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "organizer": self.organizer,
            "recipients": self.recipients,
        }


@dataclass
class Write:
    """A write the pass asked for: the operation and how many items it would touch."""

    operation: str
    mailbox: str
    items: int


class PreviewBackend(MailboxBackend):
    """Wraps a real backend: reads through, writes recorded."""

    def __init__(self, inner: MailboxBackend) -> None:
        self.inner = inner
        self.push_style = inner.push_style
        self.PROPERTY_KINDS = inner.PROPERTY_KINDS
        self.writes: list[Write] = []
        self.messages: list[Message] = []
        self._ids = itertools.count(1)
        self._read: dict[str, CalendarEvent] = {}  # events read, by id: who a cancellation reaches

    @property
    def requests(self) -> int:  # type: ignore[override]
        return self.inner.requests

    def _new_ref(self, folder_id: str) -> RemoteRef:
        return RemoteRef(f"{PREVIEW_PREFIX}{next(self._ids)}", "preview", folder_id)

    @staticmethod
    def _made_up(item_id: str) -> bool:
        return item_id.startswith(PREVIEW_PREFIX)

    def _record(self, operation: str, mailbox: str, items: int) -> None:
        self.writes.append(Write(operation, mailbox, items))

    # --- Reads ----------------------------------------------------------------------------------

    def check(self, mailbox: str) -> list[str]:
        return self.inner.check(mailbox)

    def ensure_contact_folder(self, mailbox: str, name: str) -> str:
        if not name:
            return self.inner.ensure_contact_folder(mailbox, name)
        # Finding a named folder may create it: a preview takes it as new and empty.
        self._record("create_folder", mailbox, 1)
        return f"{PREVIEW_PREFIX}folder:{name}"

    def contact_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        if self._made_up(folder_id):
            return ChangePage(token=token)
        return self.inner.contact_changes(mailbox, folder_id, token)

    def list_synced_items(self, mailbox: str, folder_id: str) -> dict[str, RemoteRef]:
        if self._made_up(folder_id):
            return {}
        return self.inner.list_synced_items(mailbox, folder_id)

    def find_by_sync_ids(
        self, mailbox: str, folder_ids: Sequence[str], sync_ids: Sequence[str]
    ) -> dict[str, RemoteRef]:
        real = [folder for folder in folder_ids if not self._made_up(folder)]
        return self.inner.find_by_sync_ids(mailbox, real, sync_ids) if real else {}

    def ensure_calendar_folder(self, mailbox: str) -> str:
        return self.inner.ensure_calendar_folder(mailbox)

    def calendar_changes(
        self, mailbox: str, folder_id: str, token: str, known: Mapping[str, str] | None = None
    ) -> ChangePage:
        return self.inner.calendar_changes(mailbox, folder_id, token, known)

    def calendar_slice(self, mailbox: str, folder_id: str, start: datetime, end: datetime) -> list[RemoteRef]:
        return self.inner.calendar_slice(mailbox, folder_id, start, end)

    def calendar_present(self, mailbox: str, folder_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        real = [i for i in item_ids if not self._made_up(i)]
        return self.inner.calendar_present(mailbox, folder_id, real) if real else {}

    def get_events(
        self, mailbox: str, refs: Sequence[RemoteRef], properties: Sequence[str] = ()
    ) -> list[CalendarEvent | MailboxError]:
        real = [ref for ref in refs if not self._made_up(ref.item_id)]
        found = iter(self.inner.get_events(mailbox, real, properties) if real else [])
        out: list[CalendarEvent | MailboxError] = []
        for ref in refs:
            if self._made_up(ref.item_id):
                out.append(ItemNotFound(f"{ref.item_id} exists only in this preview"))
                continue
            event = next(found)
            if isinstance(event, CalendarEvent):
                self._read[ref.item_id] = event
            out.append(event)
        return out

    def ensure_task_folder(self, mailbox: str) -> str:
        return self.inner.ensure_task_folder(mailbox)

    def task_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        return self.inner.task_changes(mailbox, folder_id, token)

    def get_tasks(
        self, mailbox: str, refs: Sequence[RemoteRef], properties: Sequence[str] = ()
    ) -> list[TaskItem | MailboxError]:
        real = [ref for ref in refs if not self._made_up(ref.item_id)]
        found = iter(self.inner.get_tasks(mailbox, real, properties) if real else [])
        return [
            ItemNotFound(f"{ref.item_id} exists only in this preview") if self._made_up(ref.item_id) else next(found)
            for ref in refs
        ]

    def find_tasks_by_sync_ids(
        self, mailbox: str, folder_id: str, sync_ids: Sequence[str]
    ) -> dict[str, RemoteRef]:
        return self.inner.find_tasks_by_sync_ids(mailbox, folder_id, sync_ids)

    # --- Writes, recorded -----------------------------------------------------------------------

    def create_contacts(self, mailbox: str, folder_id: str, cards: Sequence[ContactCard]) -> list[ItemResult]:
        self._record("create_contacts", mailbox, len(cards))
        return [ItemResult(ref=self._new_ref(folder_id)) for _ in cards]

    def update_contacts(
        self, mailbox: str, updates: Sequence[tuple[RemoteRef, ContactCard, Iterable[str]]]
    ) -> list[ItemResult]:
        self._record("update_contacts", mailbox, len(updates))
        return [ItemResult(ref=RemoteRef(ref.item_id, "preview", ref.folder_id)) for ref, _, _ in updates]

    def move_items(
        self, mailbox: str, refs: Sequence[RemoteRef], folder_id: str, properties: Sequence[str] = ()
    ) -> list[ItemResult]:
        self._record("move_items", mailbox, len(refs))
        return [ItemResult(ref=self._new_ref(folder_id)) for _ in refs]

    def delete_items(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        self._record("delete_items", mailbox, len(refs))
        return [ItemResult() for _ in refs]

    def create_events(
        self, mailbox: str, folder_id: str, events: Sequence[CalendarEvent], *, send_invitations: bool
    ) -> list[ItemResult]:
        self._record("create_events", mailbox, len(events))
        if send_invitations:
            for event in events:
                self._message(INVITATION, mailbox, event)
        return [ItemResult(ref=self._new_ref(folder_id)) for _ in events]

    def update_events(
        self,
        mailbox: str,
        updates: Sequence[tuple[RemoteRef, CalendarEvent, Iterable[str]]],
        *,
        send_updates: bool,
    ) -> list[ItemResult]:
        self._record("update_events", mailbox, len(updates))
        if send_updates:
            for _, event, _ in updates:
                self._message(UPDATE, mailbox, event)
        return [ItemResult(ref=RemoteRef(ref.item_id, "preview", ref.folder_id)) for ref, _, _ in updates]

    def delete_events(
        self, mailbox: str, refs: Sequence[RemoteRef], *, send_cancellations: bool
    ) -> list[ItemResult]:
        self._record("delete_events", mailbox, len(refs))
        if send_cancellations:
            for ref in refs:
                self._message(CANCELLATION, mailbox, self._read.get(ref.item_id) or self._known(mailbox, ref))
        return [ItemResult() for _ in refs]

    def create_tasks(self, mailbox: str, folder_id: str, tasks: Sequence[TaskItem]) -> list[ItemResult]:
        self._record("create_tasks", mailbox, len(tasks))
        return [ItemResult(ref=self._new_ref(folder_id)) for _ in tasks]

    def update_tasks(
        self, mailbox: str, updates: Sequence[tuple[RemoteRef, TaskItem, Iterable[str]]]
    ) -> list[ItemResult]:
        self._record("update_tasks", mailbox, len(updates))
        return [ItemResult(ref=RemoteRef(ref.item_id, "preview", ref.folder_id)) for ref, _, _ in updates]

    def delete_tasks(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        self._record("delete_tasks", mailbox, len(refs))
        return [ItemResult() for _ in refs]

    def message_changes(self, mailbox: str, folder: MailFolder, token: str, folder_id: str = "") -> MessagePage:
        return self.inner.message_changes(mailbox, folder, token, folder_id)

    def message_subfolders(self, mailbox: str, folder: MailFolder) -> list[tuple[str, str]]:
        return self.inner.message_subfolders(mailbox, folder)

    def get_messages(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[MailMessage | MailboxError]:
        return self.inner.get_messages(mailbox, refs)

    def set_message_categories(
        self, mailbox: str, changes: Sequence[tuple[RemoteRef, Sequence[str]]]
    ) -> list[ItemResult]:
        self._record("set_message_categories", mailbox, len(changes))
        return [ItemResult(ref=ref) for ref, _ in changes]

    def _known(self, mailbox: str, ref: RemoteRef) -> CalendarEvent:
        """The event a cancellation is about, read now when the pass had no cause to read it."""
        (found,) = self.inner.get_events(mailbox, [ref])
        return found if isinstance(found, CalendarEvent) else CalendarEvent(subject=ref.item_id)

    def _message(self, kind: str, mailbox: str, event: CalendarEvent) -> None:
        recipients = [
            attendee.email
            for attendee in event.attendees
            if attendee.email and attendee.email.lower() != mailbox.lower()
        ]
        if recipients:
            self.messages.append(Message(kind, event.subject, event.organizer or mailbox, recipients))

    # The preview subscribes to nothing: push stays with the real synchronizer.

    def close(self) -> None:
        self.inner.close()
