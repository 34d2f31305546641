"""``DominoBackend``: the mailbox interface over the HCL Domino REST API (calendar and To Do)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, NoReturn

from synccore.mailbox import base
from synccore.mailbox.base import (
    ChangePage,
    ConnectionConfig,
    ContactCard,
    ItemResult,
    MailboxBackend,
    MailFolder,
    MailMessage,
    MessagePage,
    PushStyle,
    RemoteRef,
)
from synccore.mailbox.domino.calendar import CalendarOperations
from synccore.mailbox.domino.client import DominoClient
from synccore.mailbox.domino.tasks import TaskOperations


class NotSupportedOnDomino(base.PermanentMailboxError):
    """What the Domino backend does not offer yet (docs/domino.md)."""


def _refuse(what: str) -> NoReturn:
    raise NotSupportedOnDomino(
        f"{what} is not synchronized with HCL Domino mail files yet (docs/domino.md): turn it off for "
        "Domino environments.",
        code="NotSupportedOnDomino",
    )


class DominoBackend(CalendarOperations, TaskOperations, MailboxBackend):
    """A ``MailboxBackend`` over the Domino REST API: one client, calendar and To Do operations mixed in.
    No push: the runtime polls at the pull interval (``push_style`` '')."""

    push_style: ClassVar[PushStyle] = ""
    # Notes items carry no extended properties of ours (custom fields map to standard fields only).
    PROPERTY_KINDS: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self.client = DominoClient(config)
        self._entries: dict[tuple[str, str], dict[str, Any]] = {}
        self._listed: dict[str, Any] = {}

    @property
    def requests(self) -> int:  # type: ignore[override]
        return self.client.requests

    def check(self, mailbox: str) -> list[str]:
        tried = [f"HCL Domino REST API {self.client.base} as {self.config.username}"]
        self.client.token()
        tried.append("logged in (JWT)")
        self.ensure_calendar_folder(mailbox)
        tried.append(f"opened the calendar of {mailbox}")
        return tried

    def close(self) -> None:
        self.client.close()

    # Not offered yet ---------------------------------------------------------------------------

    def ensure_contact_folder(self, mailbox: str, name: str) -> str:
        _refuse("Contacts")

    def contact_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        _refuse("Contacts")

    def list_synced_items(self, mailbox: str, folder_id: str) -> dict[str, RemoteRef]:
        _refuse("Contacts")

    def find_by_sync_ids(
        self, mailbox: str, folder_ids: Sequence[str], sync_ids: Sequence[str]
    ) -> dict[str, RemoteRef]:
        _refuse("Contacts")

    def create_contacts(self, mailbox: str, folder_id: str, cards: Sequence[ContactCard]) -> list[ItemResult]:
        _refuse("Contacts")

    def update_contacts(
        self, mailbox: str, updates: Sequence[tuple[RemoteRef, ContactCard, Iterable[str]]]
    ) -> list[ItemResult]:
        _refuse("Contacts")

    def move_items(
        self, mailbox: str, refs: Sequence[RemoteRef], folder_id: str, properties: Sequence[str] = ()
    ) -> list[ItemResult]:
        _refuse("Contacts")

    def delete_items(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        _refuse("Contacts")

    def message_changes(
        self, mailbox: str, folder: MailFolder, token: str, folder_id: str = ""
    ) -> MessagePage:
        _refuse("E-mail filing")

    def message_subfolders(self, mailbox: str, folder: MailFolder) -> list[tuple[str, str]]:
        _refuse("E-mail filing")

    def get_messages(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[MailMessage | base.MailboxError]:
        _refuse("E-mail filing")

    def set_message_categories(
        self, mailbox: str, changes: Sequence[tuple[RemoteRef, Sequence[str]]]
    ) -> list[ItemResult]:
        _refuse("E-mail filing")
