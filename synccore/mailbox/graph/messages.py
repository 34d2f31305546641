"""The message operations of the Graph backend (e-mail filing, E1–E6): ``mailFolders/{inbox|sentitems}/
messages/delta`` with the headers filing decides on, ``$batch`` reads of bodies (as text) and attachment
names, ``$batch`` PATCHes of categories. Needs the application permission ``Mail.ReadWrite``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from synccore.mailbox import base
from synccore.mailbox.base import (
    ItemResult,
    MailAddress,
    MailboxError,
    MailFolder,
    MailMessage,
    MessagePage,
    RemoteRef,
)
from synccore.mailbox.graph.client import (
    DELTA_PAGE_SIZE,
    IMMUTABLE_IDS,
    PAGE_SIZE,
    Call,
    GraphClient,
    odata_query,
    segment,
    user_path,
)
from synccore.mailbox.graph.translation import change_key_of

HEADERS = (
    "id,changeKey,subject,categories,internetMessageId,isDraft,from,sender,toRecipients,ccRecipients,"
    "sentDateTime,receivedDateTime,hasAttachments,webLink"
)
TEXT_BODY = {"Prefer": f'{IMMUTABLE_IDS}, outlook.body-content-type="text"'}


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _address(value: dict[str, Any] | None) -> MailAddress | None:
    found = (value or {}).get("emailAddress") or {}
    return MailAddress(found["address"], found.get("name") or "") if found.get("address") else None


def _addresses(values: list[dict[str, Any]] | None) -> list[MailAddress]:
    return [found for found in (_address(v) for v in values or []) if found]


def from_graph(entity: dict[str, Any], folder: MailFolder, folder_id: str = "", full: bool = False) -> MailMessage:
    message = MailMessage(
        message_id=entity.get("internetMessageId") or "",
        subject=entity.get("subject") or "",
        folder=folder,
        sender=_address(entity.get("from")) or _address(entity.get("sender")),
        to=_addresses(entity.get("toRecipients")),
        cc=_addresses(entity.get("ccRecipients")),
        sent_at=_moment(entity.get("sentDateTime")),
        received_at=_moment(entity.get("receivedDateTime")),
        categories=list(entity.get("categories") or []),
        is_draft=bool(entity.get("isDraft")),
        has_attachments=bool(entity.get("hasAttachments")),
        ref=RemoteRef(entity["id"], change_key_of(entity), folder_id or folder),
        web_link=entity.get("webLink") or "",
    )
    if full:
        message.body = ((entity.get("body") or {}).get("content") or "").strip()
        message.attachment_names = [a.get("name") or "" for a in entity.get("attachments") or []]
    return message


class MessageOperations:
    """The message half of ``MailboxBackend`` over Graph (mixed into ``GraphBackend``)."""

    client: GraphClient

    def message_changes(self, mailbox: str, folder: MailFolder, token: str, folder_id: str = "") -> MessagePage:
        path = f"{user_path(mailbox)}/mailFolders/{segment(folder_id) if folder_id else folder}/messages/delta"
        first = f"{path}?{odata_query(select=HEADERS)}"
        headers = {"Prefer": f"{IMMUTABLE_IDS}, odata.maxpagesize={DELTA_PAGE_SIZE}"}
        changed: dict[str, MailMessage] = {}
        deleted: dict[str, None] = {}
        page: dict[str, Any] = {}
        try:
            for page in self.client.pages(mailbox, token or first, headers=headers):
                for entry in page.get("value", []):
                    if "@removed" in entry:
                        changed.pop(entry["id"], None)
                        deleted[entry["id"]] = None
                    else:
                        deleted.pop(entry["id"], None)
                        changed[entry["id"]] = from_graph(entry, folder, folder_id)
        except (base.ItemNotFound, base.InvalidItem) as exc:
            if token:  # a token the server no longer knows, or a foreign one (stored by EWS)
                raise base.InvalidSyncToken(str(exc), code=exc.code) from exc
            raise
        next_token = page.get("@odata.deltaLink", "")
        if not next_token:
            raise base.TransientMailboxError("Microsoft Graph ended a delta round without a deltaLink.")
        return MessagePage(messages=list(changed.values()), deleted=list(deleted), token=next_token)

    def message_subfolders(self, mailbox: str, folder: MailFolder) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        parents = [folder]
        while parents:
            parent = parents.pop()
            query = odata_query(select="id,displayName,childFolderCount", top=PAGE_SIZE)
            for page in self.client.pages(mailbox, f"{user_path(mailbox)}/mailFolders/{segment(parent)}/childFolders?{query}"):
                for child in page.get("value", []):
                    found.append((child["id"], child.get("displayName") or ""))
                    if child.get("childFolderCount"):
                        parents.append(child["id"])
        return found

    def get_messages(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[MailMessage | MailboxError]:
        if not refs:
            return []
        query = odata_query(select=f"{HEADERS},body", expand="attachments($select=name)")
        calls = [
            Call("GET", f"{user_path(mailbox)}/messages/{segment(r.item_id)}?{query}", headers=TEXT_BODY) for r in refs
        ]
        out: list[MailMessage | MailboxError] = []
        for ref, answer in zip(refs, self.client.batch(mailbox, calls), strict=True):
            # A sub-folder's message reads as the Inbox's here: the caller has its headers.
            folder: MailFolder = "sentitems" if ref.folder_id == "sentitems" else "inbox"
            out.append(from_graph(answer.body, folder, ref.folder_id, full=True) if answer.ok else answer.error())
        return out

    def set_message_categories(
        self, mailbox: str, changes: Sequence[tuple[RemoteRef, Sequence[str]]]
    ) -> list[ItemResult]:
        if not changes:
            return []
        calls = [
            Call("PATCH", f"{user_path(mailbox)}/messages/{segment(ref.item_id)}", {"categories": list(categories)})
            for ref, categories in changes
        ]
        answers = self.client.batch(mailbox, calls)
        return [
            ItemResult(ref=RemoteRef(ref.item_id, change_key_of(a.body or {}), ref.folder_id))
            if a.ok
            else ItemResult(error=a.error())
            for (ref, _), a in zip(changes, answers, strict=True)
        ]
