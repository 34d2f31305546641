"""Sending mail between simulator mailboxes, as Exchange does for SendItem and CreateItem with a send disposition.

A sent message goes to Sent Items (or the folder named) when a copy is kept, else it is gone; every
recipient that is a simulator mailbox gets a copy in its Inbox (unread, not a draft). Recipients outside
the simulator are accepted and dropped.
"""

from __future__ import annotations

import copy
from typing import Any

from exchange_sim.store import Item, Store, StoreError

RECIPIENT_FIELDS = ("ToRecipients", "CcRecipients", "BccRecipients")


def recipients(props: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for name in RECIPIENT_FIELDS:
        for mailbox in props.get(name) or []:
            address = (mailbox or {}).get("EmailAddress")
            if address and address.lower() not in {a.lower() for a in found}:
                found.append(address)
    return found


def send(store: Store, item_id: str, save_copy: bool = True, saved_folder_id: str | None = None) -> Item | None:
    """Send a saved message; returns the copy kept in Sent Items (or the folder named), or None."""
    with store.lock:
        item = store.item(item_id)
        if item.kind not in {"Message", "Item"} and not item.kind.startswith("Meeting"):
            raise StoreError("ErrorInvalidItemForOperationSendItem", "The item cannot be sent.")
        sender = store.mailbox(item.mailbox)
        author = {"Name": sender.display_name, "EmailAddress": sender.address, "RoutingType": "SMTP", "MailboxType": "Mailbox"}
        now = store.clock.now()
        for address in recipients(item.props):
            if store.has_mailbox(address):
                delivered = copy.deepcopy(item.props)
                delivered.update({"From": author, "Sender": author, "IsRead": False, "IsDraft": False, "DateTimeSent": now})
                delivered["DateTimeReceived"] = now
                inbox = store.distinguished_folder(address, "inbox")
                store.create_item(inbox.id, item.kind, delivered, dict(item.extended), context={"delivery": True})
        if not save_copy:
            store.delete_item(item.id, "HardDelete", context={"delivery": True})
            return None
        store.update_item(
            item.id,
            set_props={"IsDraft": False, "IsRead": True, "From": author, "Sender": author, "DateTimeSent": now},
            context={"delivery": True},
        )
        target = saved_folder_id or store.distinguished_folder(item.mailbox, "sentitems").id
        return store.move_item(item.id, target) if store.item(item.id).folder_id != target else store.item(item.id)


__all__ = ["recipients", "send"]
