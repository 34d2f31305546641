"""The message operations of the EWS backend (e-mail filing, E1–E6): SyncFolderItems on the Inbox and
Sent Items with the headers filing decides on, GetItem for bodies and attachment names, bulk UpdateItem
for categories.

The folders are named by their distinguished ids (no GetFolder round trip), so an idle folder costs
one SyncFolderItems request. Bodies come as Exchange keeps them (text or HTML); the engine reads them
as text."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from exchangelib import Message
from exchangelib.folders import DEEP, FolderCollection, Inbox, SentItems
from exchangelib.properties import DistinguishedFolderId, Mailbox

from synccore.mailbox import base
from synccore.mailbox.base import (
    ConnectionConfig,
    ItemResult,
    MailAddress,
    MailboxError,
    MailFolder,
    MailMessage,
    MessagePage,
    RemoteRef,
)
from synccore.mailbox.ews.client import SYNC_PAGE, item_result, translate

_FOLDERS = {"inbox": Inbox, "sentitems": SentItems}
# What a change of a folder carries: the headers filing decides on (E1, E2, E4, E5).
HEADER_FIELDS = (
    "subject",
    "categories",
    "message_id",
    "is_draft",
    "author",
    "sender",
    "to_recipients",
    "cc_recipients",
    "datetime_sent",
    "datetime_received",
    "has_attachments",
)


def _utc(value: datetime | None) -> datetime | None:
    # exchangelib's own datetime type refuses the standard library's UTC in astimezone().
    return datetime.fromtimestamp(value.timestamp(), UTC) if value else None


def _address(mailbox: Mailbox | None) -> MailAddress | None:
    if mailbox is None or not mailbox.email_address:
        return None
    return MailAddress(mailbox.email_address, mailbox.name or "")


def _addresses(mailboxes: Sequence[Mailbox] | None) -> list[MailAddress]:
    return [found for found in (_address(m) for m in mailboxes or []) if found]


def from_message(item: Message, folder: MailFolder, folder_id: str = "", full: bool = False) -> MailMessage:
    message = MailMessage(
        message_id=item.message_id or "",
        subject=item.subject or "",
        folder=folder,
        sender=_address(item.author) or _address(item.sender),
        to=_addresses(item.to_recipients),
        cc=_addresses(item.cc_recipients),
        sent_at=_utc(item.datetime_sent),
        received_at=_utc(item.datetime_received),
        categories=list(item.categories or []),
        is_draft=bool(item.is_draft),
        has_attachments=bool(item.has_attachments),
        ref=RemoteRef(item.id, item.changekey or "", folder_id or folder),
    )
    if full:
        message.body = str(item.body or "")
        message.attachment_names = [a.name or "" for a in item.attachments or []]
    return message


class MessageOperations:
    """The message half of ``MailboxBackend`` over EWS, mixed into ``EwsBackend``, whose ``account``,
    ``call`` and ``root`` it uses."""

    config: ConnectionConfig

    def mail_folder(self, mailbox: str, folder: MailFolder):
        account = self.account(mailbox)
        cls = _FOLDERS[folder]
        return cls(
            root=self.root(account),
            _distinguished_id=DistinguishedFolderId(
                id=cls.DISTINGUISHED_FOLDER_ID, mailbox=Mailbox(email_address=account.primary_smtp_address)
            ),
        )

    def message_web_link(self, mailbox: str, message: MailMessage) -> str:
        """Outlook on the web beside the EWS endpoint (``/owa``), the message opened by its item id
        as Exchange's own ``WebClientReadFormQueryString`` does; "" without a configured EWS URL."""
        endpoint = urlsplit(self.config.ews_url or "")
        if not (endpoint.scheme and endpoint.netloc and message.ref):
            return ""
        item = quote(message.ref.item_id, safe="")
        return f"{endpoint.scheme}://{endpoint.netloc}/owa/?ItemID={item}&exvsurl=1&viewmodel=ReadMessageItem"

    def message_changes(self, mailbox: str, folder: MailFolder, token: str, folder_id: str = "") -> MessagePage:
        target = self.folder(self.account(mailbox), folder_id) if folder_id else self.mail_folder(mailbox, folder)
        page = MessagePage()

        def consume() -> None:
            for change_type, item in target.sync_items(
                sync_state=token or None, only_fields=list(HEADER_FIELDS), max_changes_returned=SYNC_PAGE
            ):
                if change_type == "delete":
                    page.deleted.append(item.id)
                elif change_type in ("create", "update") and isinstance(item, Message):
                    page.messages.append(from_message(item, folder, folder_id))

        self.call(consume)
        page.token = target.item_sync_state or ""
        return page

    def message_subfolders(self, mailbox: str, folder: MailFolder) -> list[tuple[str, str]]:
        target = self.mail_folder(mailbox, folder)

        def find() -> list[tuple[str, str]]:
            found = FolderCollection(account=target.account, folders=[target]).find_folders(depth=DEEP)
            return [
                (f.id, f.name or "")
                for f in found
                if not isinstance(f, Exception) and (f.folder_class or "IPF.Note").startswith("IPF.Note")
            ]

        return self.call(find)

    def get_messages(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[MailMessage | MailboxError]:
        if not refs:
            return []
        account = self.account(mailbox)
        fields = [*HEADER_FIELDS, "body", "attachments"]
        # The Inbox (by its distinguished id) validates the fields: exchangelib's default asks the
        # server for the root folder first, one request more.
        validation = self.mail_folder(mailbox, "inbox")
        items = self.call(
            lambda: list(
                account.fetch(
                    ids=[(r.item_id, None) for r in refs],
                    folder=validation,
                    only_fields=fields,
                    chunk_size=self.config.batch_size,
                )
            )
        )
        out: list[MailMessage | MailboxError] = []
        for ref, item in zip(refs, items, strict=True):
            if isinstance(item, Exception):
                out.append(translate(item))
            elif not isinstance(item, Message):
                out.append(base.InvalidItem(f"{ref.item_id} is not a message.", code="ErrorItemNotFound"))
            else:
                # A sub-folder's message reads as the Inbox's here: the caller has its headers.
                folder: MailFolder = "sentitems" if ref.folder_id == "sentitems" else "inbox"
                out.append(from_message(item, folder, ref.folder_id, full=True))
        return out

    def set_message_categories(
        self, mailbox: str, changes: Sequence[tuple[RemoteRef, Sequence[str]]]
    ) -> list[ItemResult]:
        if not changes:
            return []
        account = self.account(mailbox)
        items = []
        for ref, categories in changes:
            item = Message(account=account, categories=list(categories) or None)
            item.id, item.changekey = ref.item_id, ref.change_key or None
            items.append((item, ["categories"]))
        results = self.call(
            account.bulk_update,
            items=items,
            conflict_resolution="AlwaysOverwrite",
            chunk_size=self.config.batch_size,
        )
        return [item_result(result, ref.folder_id) for (ref, _), result in zip(changes, results, strict=True)]
