"""The user-side API: act like a person in Outlook on one mailbox.

Everything goes through the same store the EWS front end serves, so a synchronizer sees these
actions as foreign changes (new change keys, sync-state entries, notifications).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from exchange_sim.store import ExtendedKey, Folder, Item, Store

ItemRef = Item | str | Any  # a store Item, an id, or anything with an .id (e.g. an exchangelib item)


def _id(ref: ItemRef) -> str:
    return ref if isinstance(ref, str) else ref.id


class MailboxUser:
    """``sim.user("alice@contoso.example")``. Property names are EWS element names (see store docs).

    Folders are given as a distinguished name (``"contacts"``), a path (``"contacts/CRM"``) or an id.
    """

    def __init__(self, store: Store, address: str) -> None:
        self.store = store
        self.address = store.mailbox(address).address

    def __repr__(self) -> str:
        return f"<MailboxUser {self.address}>"

    # ---- folders ---------------------------------------------------------------------------------
    def folder(self, ref: str = "contacts") -> Folder:
        return self.store.resolve_folder(self.address, ref)

    def folders(self, ref: str = "msgfolderroot", deep: bool = True) -> list[Folder]:
        return self.store.child_folders(self.folder(ref).id, deep=deep)

    def create_folder(self, name: str, parent: str = "contacts", folder_class: str | None = None) -> Folder:
        return self.store.create_folder(self.folder(parent).id, name, folder_class)

    def delete_folder(self, ref: str) -> None:
        self.store.delete_folder(self.folder(ref).id)

    # ---- reading ---------------------------------------------------------------------------------
    def items(self, folder: str = "contacts", kind: str | None = None) -> list[Item]:
        return sorted(self.store.items(self.folder(folder).id, kind), key=lambda i: i.created_seq)

    def contacts(self, folder: str = "contacts") -> list[Item]:
        return self.items(folder, "Contact")

    def all_contacts(self) -> list[Item]:
        """Contacts in every folder of the mailbox."""
        return self.store.all_items(self.address, "Contact")

    def get(self, ref: ItemRef) -> Item:
        return self.store.item(_id(ref))

    def find(self, folder: str = "contacts", **equals: Any) -> list[Item]:
        """Items whose properties equal the given values, e.g. ``find(Surname="Doe")``."""
        return [i for i in self.items(folder) if all(i.props.get(k) == v for k, v in equals.items())]

    def find_by_extended(self, name: str, value: Any, folder: str | None = None) -> list[Item]:
        items = self.items(folder) if folder else self.store.all_items(self.address)
        return [i for i in items if any(k.name == name and v == value for k, v in i.extended.items())]

    # ---- writing ---------------------------------------------------------------------------------
    def create_contact(self, folder: str = "contacts", extended: dict[ExtendedKey, Any] | None = None, **props: Any) -> Item:
        """``create_contact(GivenName="Ann", Surname="Lee", EmailAddresses={"EmailAddress1": "ann@x.example"})``"""
        return self.store.create_item(self.folder(folder).id, "Contact", props, extended)

    def create_item(self, kind: str, folder: str, extended: dict[ExtendedKey, Any] | None = None, **props: Any) -> Item:
        return self.store.create_item(self.folder(folder).id, kind, props, extended)

    def edit(self, ref: ItemRef, *, send: bool = True, **props: Any) -> Item:
        """Set properties; a value of None removes the property (as clearing a field in Outlook).

        An occurrence (from `view`, or `occurrence(series, n)`) becomes an exception of its series.
        An organizer's meeting change goes out to the attendees unless ``send=False``.
        """
        context = {"by_user": True, "send_invitations": "SendToAllAndSaveCopy" if send else "SendToNone"}
        occurrence = self._occurrence(_id(ref))
        if occurrence is not None:
            from exchange_sim.calendar import modify_occurrence

            return modify_occurrence(self.store, occurrence, props, context=context)
        removed = [k for k, v in props.items() if v is None]
        kept = {k: v for k, v in props.items() if v is not None}
        return self.store.update_item(_id(ref), set_props=kept, delete_props=removed, context=context)

    def occurrence(self, series: ItemRef, index: int) -> Item:
        """The n-th (1-based) occurrence of a recurring series, as Outlook opens it."""
        from exchange_sim.calendar import find_occurrence

        return find_occurrence(self.store, _id(series), index=index)

    def _occurrence(self, item_id: str) -> Item | None:
        from exchange_sim.calendar import find_occurrence, split_occurrence_id

        split = split_occurrence_id(item_id)
        return find_occurrence(self.store, split[0], original=split[1]) if split else None

    def set_extended(self, ref: ItemRef, key: ExtendedKey, value: Any) -> Item:
        return self.store.update_item(_id(ref), set_extended={key: value})

    def delete(self, ref: ItemRef, hard: bool = False, send: bool = True) -> None:
        """Delete as Outlook does: to Deleted Items (new id there), or hard. An occurrence is removed from
        its series; an organizer's meeting sends cancellations unless ``send=False``."""
        context = {"by_user": True, "send_invitations": "SendToAllAndSaveCopy" if send else "SendToNone"}
        occurrence = self._occurrence(_id(ref))
        if occurrence is not None:
            from exchange_sim.calendar import delete_occurrence

            delete_occurrence(self.store, occurrence, context=context)
            return
        self.store.delete_item(_id(ref), "HardDelete" if hard else "MoveToDeletedItems", context=context)

    def move(self, ref: ItemRef, folder: str) -> Item:
        return self.store.move_item(_id(ref), self.folder(folder).id)

    def lose(self, ref: ItemRef) -> None:
        """The item is gone and no change feed reports it (a restore from an older backup)."""
        self.store.lose_item(_id(ref))

    # ---- tasks (see tasks.py for the semantics) ---------------------------------------------------
    def create_task(self, subject: str, folder: str = "tasks", extended: dict[ExtendedKey, Any] | None = None, **props: Any) -> Item:
        """``create_task("Call Ann", DueDate=date(2027, 3, 10), Importance="High")``: a task in the Tasks folder
        (Microsoft To Do's default list)."""
        return self.store.create_item(self.folder(folder).id, "Task", {"Subject": subject, **props}, extended, context={"by_user": True})

    def tasks(self, folder: str = "tasks") -> list[Item]:
        return self.items(folder, "Task")

    def complete_task(self, ref: ItemRef) -> Item:
        """Tick the task off, as in Outlook or To Do: Completed, 100 %, completed today."""
        return self.edit(ref, Status="Completed")

    # ---- mail (see messages.py / mail.py for the semantics) ------------------------------------------
    def receive_message(self, subject: str, sender: str, **kw: Any) -> Item:
        """``receive_message("Offer", "ann@fabrikam.example", to=[me], categories=["CRM"])``: a message from
        outside lands in the Inbox (``folder=`` another one; see `messages.deliver` for the rest)."""
        from exchange_sim import messages

        kw.setdefault("to", [self.address])
        return messages.deliver(self.store, self.address, subject=subject, sender=sender, **kw)

    def send_message(self, subject: str, to: list[Any], **kw: Any) -> Item | None:
        """Send as in Outlook: simulator recipients get it in their Inbox, the copy goes to Sent Items."""
        from exchange_sim import messages

        return messages.send(self.store, self.address, subject=subject, to=to, **kw)

    def messages(self, folder: str = "inbox") -> list[Item]:
        return self.items(folder, "Message")

    def categorize(self, ref: ItemRef, *categories: str) -> Item:
        """Set an item's categories, as ticking them in Outlook (none clears them)."""
        return self.edit(ref, Categories=list(categories) or None)

    # ---- calendar (see calendar.py / meetings.py for the semantics) --------------------------------
    def create_event(
        self,
        subject: str,
        start: datetime,
        end: datetime,
        folder: str = "calendar",
        *,
        time_zone: str | None = None,
        send: bool = True,
        extended: dict[ExtendedKey, Any] | None = None,
        **props: Any,
    ) -> Item:
        """An appointment, or a meeting when RequiredAttendees/OptionalAttendees are given.

        ``time_zone`` is a Windows zone id (default: the mailbox's zone). With ``send`` the invitations
        go out as with SendToAllAndSaveCopy.
        """
        from exchange_sim.calendar import windows_zone_for

        zone = time_zone or windows_zone_for(self.store.mailbox(self.address).time_zone)
        values = {"Subject": subject, "Start": start, "End": end, "StartTimeZone": zone, "EndTimeZone": zone, **props}
        context = {"send_invitations": "SendToAllAndSaveCopy" if send else "SendToNone", "by_user": True}
        return self.store.create_item(self.folder(folder).id, "CalendarItem", values, extended, context=context)

    def receive_meeting(
        self,
        subject: str,
        start: datetime,
        end: datetime,
        organizer: str,
        *,
        uid: str | None = None,
        organizer_name: str | None = None,
        **props: Any,
    ) -> Item:
        """An invitation from someone outside the simulator, as it lands in this calendar.

        Pass the same ``uid`` to several mailboxes to model one external meeting with many invitees.
        """
        from exchange_sim.calendar import windows_zone_for

        zone = windows_zone_for(self.store.mailbox(self.address).time_zone)
        values = {
            "Subject": subject,
            "Start": start,
            "End": end,
            "StartTimeZone": zone,
            "EndTimeZone": zone,
            "Organizer": {"Name": organizer_name or organizer, "EmailAddress": organizer, "RoutingType": "SMTP"},
            "IsMeeting": True,
            "MyResponseType": "NoResponseReceived",
            "LegacyFreeBusyStatus": "Tentative",
            "IsResponseRequested": True,
            "RequiredAttendees": [{"Mailbox": {"EmailAddress": self.address}, "ResponseType": "Unknown"}],
            **props,
        }
        if uid:
            values["UID"] = uid
        return self.store.create_item(self.folder("calendar").id, "CalendarItem", values, context={"delivery": True})

    def touch(self, ref: ItemRef) -> Item:
        """Exchange rewrote the item on its own (a calendar assistant pass): only the change key moves."""
        return self.store.touch_item(_id(ref))

    def events(self, folder: str = "calendar") -> list[Item]:
        return self.items(folder, "CalendarItem")

    def find_event(self, uid: str) -> Item | None:
        return next((i for i in self.store.all_items(self.address, "CalendarItem") if i.props.get("UID") == uid), None)

    def view(self, start: datetime, end: datetime, folder: str = "calendar") -> list[Item]:
        """Occurrences between start and end, recurring series expanded (like Outlook's calendar view)."""
        from exchange_sim.calendar import expand_view

        return expand_view(self.store, self.folder(folder).id, start, end)

    def accept(self, ref: ItemRef, send: bool = True) -> Item:
        return self.respond(ref, "Accept", send)

    def decline(self, ref: ItemRef, send: bool = True) -> Item:
        return self.respond(ref, "Decline", send)

    def tentative(self, ref: ItemRef, send: bool = True) -> Item:
        return self.respond(ref, "Tentative", send)

    def respond(self, ref: ItemRef, response: str, send: bool = True) -> Item:
        from exchange_sim.meetings import respond

        return respond(self.store, _id(ref), response, send)

    def dismiss_reminder(self, ref: ItemRef) -> Item:
        """Exchange rewrites the item (change key moves) although nothing the user sees changed."""
        return self.store.update_item(_id(ref), set_props={"ReminderIsSet": False}, context={"by_user": True})
