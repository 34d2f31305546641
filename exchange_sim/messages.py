"""Messages: the e-mail of a mailbox's Inbox, Sent Items and Drafts (EWS ``t:Message``, Graph ``message``).

What both front ends share:
* Every message has an Internet message id (``InternetMessageId``, ``<hex@domain>``) from its creation; a
  sent message's copies (the sender's in Sent Items, each recipient's in its Inbox, see `exchange_sim.mail`)
  carry the same one, as they do in Exchange.
* A message saved without being sent (CreateItem ``SaveOnly``, Graph ``POST /messages``) is a draft
  (``IsDraft`` true); delivery and sending clear it.
* `deliver` puts a message into a mailbox as if it came from outside the organisation (the ``/_sim/``
  control call ``POST /_sim/mailboxes/<address>/messages``), or as a copy sent from this mailbox by
  another client (folder ``sentitems``).

Addresses are EWS mailboxes: ``{"Name": ..., "EmailAddress": ..., "RoutingType": "SMTP"}``. Attachments are the
store's (``{"type": "File", "Name": ..., "Content": base64}``).
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

from exchange_sim import mail
from exchange_sim.store import Item, Store

FOLDERS = ("inbox", "sentitems", "drafts")


def new_message_id(address: str) -> str:
    domain = address.rpartition("@")[2] or "exchange-sim.example"
    return f"<{uuid.uuid4().hex}@{domain}>"


def complete_message_defaults(store: Store, item: Item) -> None:
    """Every write: a message has an Internet message id and says whether it is a draft."""
    if item.kind != "Message":
        return
    item.props.setdefault("InternetMessageId", new_message_id(item.mailbox))
    item.props.setdefault("IsDraft", True)
    item.props.setdefault("IsRead", True)


def mailbox_value(address: str, name: str | None = None) -> dict[str, Any]:
    return {"Name": name or address, "EmailAddress": address, "RoutingType": "SMTP", "MailboxType": "OneOff"}


def _address_of(value: Any) -> dict[str, Any]:
    """A recipient given as an address, or as {"address"/"EmailAddress", "name"/"Name"}."""
    if isinstance(value, dict):
        address = value.get("address") or value.get("EmailAddress") or ""
        return mailbox_value(address, value.get("name") or value.get("Name"))
    return mailbox_value(str(value))


def _attachment(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"name": value}
    content = value.get("content") or ""
    raw = content.encode() if isinstance(content, str) else bytes(content)
    return {"type": "File", "Name": value.get("name") or "attachment", "ContentType": value.get("content_type") or "application/octet-stream",
            "Content": base64.b64encode(raw).decode()}  # fmt: skip


def deliver(
    store: Store,
    address: str,
    *,
    folder: str = "inbox",
    sender: str | dict[str, Any] | None = None,
    to: list[Any] | None = None,
    cc: list[Any] | None = None,
    subject: str = "",
    body: str | dict[str, Any] = "",
    categories: list[str] | None = None,
    received: datetime | None = None,
    internet_message_id: str | None = None,
    attachments: list[Any] | None = None,
    is_read: bool = False,
) -> Item:
    """A message as it lands in a mailbox's folder (``inbox``: received from ``sender``; ``sentitems``: sent
    from this mailbox by another client; any folder path too). Nothing is sent on to anyone."""
    with store.lock:
        own = store.mailbox(address)
        target = store.resolve_folder(address, folder)
        when = received or store.clock.now()
        author = _address_of(sender) if sender else mailbox_value(own.address, own.display_name)
        props: dict[str, Any] = {
            "Subject": subject,
            "Body": body if isinstance(body, dict) else {"type": "Text", "content": body},
            "From": author,
            "Sender": author,
            "ToRecipients": [_address_of(a) for a in to or []],
            "CcRecipients": [_address_of(a) for a in cc or []],
            "DateTimeSent": when,
            "DateTimeReceived": when,
            "IsDraft": False,
            "IsRead": is_read or target.distinguished == "sentitems",
            "InternetMessageId": internet_message_id or new_message_id(author["EmailAddress"]),
        }
        props = {k: v for k, v in props.items() if v != []}
        if categories:
            props["Categories"] = list(categories)
        if attachments:
            props["Attachments"] = [_attachment(a) for a in attachments]
        return store.create_item(target.id, "Message", props, context={"delivery": True})


def send(
    store: Store,
    address: str,
    *,
    to: list[Any],
    cc: list[Any] | None = None,
    subject: str = "",
    body: str | dict[str, Any] = "",
    categories: list[str] | None = None,
    attachments: list[Any] | None = None,
    save_copy: bool = True,
) -> Item | None:
    """Send from this mailbox as Outlook does: recipients in the simulator get it in their Inbox, the sender's
    copy goes to Sent Items (returned; None without a copy)."""
    with store.lock:
        props: dict[str, Any] = {
            "Subject": subject,
            "Body": body if isinstance(body, dict) else {"type": "Text", "content": body},
            "ToRecipients": [_address_of(a) for a in to],
        }
        if cc:
            props["CcRecipients"] = [_address_of(a) for a in cc]
        if categories:
            props["Categories"] = list(categories)
        if attachments:
            props["Attachments"] = [_attachment(a) for a in attachments]
        draft = store.create_item(store.distinguished_folder(address, "drafts").id, "Message", props)
        return mail.send(store, draft.id, save_copy=save_copy)


def install(simulator: Any) -> None:
    store: Store = simulator.store
    store.add_hook("complete_defaults", lambda item: complete_message_defaults(store, item))


__all__ = ["FOLDERS", "deliver", "mailbox_value", "new_message_id", "send"]
