"""Meeting behaviour between simulator mailboxes, as Exchange does it.

Saving a meeting with SendToAll(AndSaveCopy) / SendOnlyToAll delivers an invitee copy with the same
UID into every attendee mailbox the simulator holds (IsMeeting, Organizer, MyResponseType
NoResponseReceived, shown Tentative), and a MeetingRequest in the attendee's Inbox
(IPM.Schedule.Meeting.Request, MeetingRequestType NewMeetingRequest, or FullUpdate for an update)
pointing at that copy; responding through the request moves it to Deleted Items. Updates sent to all propagate, removed attendees and deleted or
cancelled meetings send cancellations (the invitee copy is marked cancelled, as Outlook shows it).
SendToNone delivers nothing. Responses update the organizer's copy, which moves its change key.
Delivery can be delayed (`Meetings.delivery_delay`, seconds), as Exchange processes requests
asynchronously.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import UTC
from typing import Any

from exchange_sim.store import Item, Store, StoreError, plain_copy

SEND_TO_ALL = {"SendToAllAndSaveCopy", "SendOnlyToAll", "SendToChangedAndSaveCopy", "SendOnlyToChanged"}
SHARED_PROPS = (
    "Subject",
    "Body",
    "Start",
    "End",
    "StartTimeZone",
    "EndTimeZone",
    "IsAllDayEvent",
    "Location",
    "Sensitivity",
    "Importance",
    "Recurrence",
    "_exceptions",
    "_deleted",
    "Organizer",
    "RequiredAttendees",
    "OptionalAttendees",
    "Resources",
    "UID",
    "Categories",
)
FREE_BUSY_FOR = {"Accept": "Busy", "Tentative": "Tentative", "Decline": "Free"}
# What a MeetingRequest message carries of the meeting (no exceptions, no free/busy of the organizer)
REQUEST_PROPS = (
    "Subject", "Body", "Start", "End", "StartTimeZone", "EndTimeZone", "IsAllDayEvent", "Location", "Sensitivity",
    "Importance", "Recurrence", "Organizer", "RequiredAttendees", "OptionalAttendees", "Resources", "UID", "Categories",
)


def attendee_addresses(props: dict[str, Any]) -> list[str]:
    addresses = []
    for name in ("RequiredAttendees", "OptionalAttendees", "Resources"):
        for attendee in props.get(name) or []:
            address = (attendee.get("Mailbox") or {}).get("EmailAddress")
            if address:
                addresses.append(address)
    return addresses


def organizer_address(item: Item) -> str:
    return ((item.props.get("Organizer") or {}).get("EmailAddress") or item.mailbox).lower()


def is_organizer_copy(item: Item) -> bool:
    return item.kind == "CalendarItem" and organizer_address(item) == item.mailbox.lower()


class Meetings:
    """Installed on a Simulator as ``sim.meetings``; ``delivery_delay`` in seconds (default 0)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.delivery_delay = 0.0
        self._timers: list[threading.Timer] = []

    # ---- hooks -----------------------------------------------------------------------------------
    def after_create(self, item: Item, context: dict[str, Any]) -> None:
        if item.kind != "CalendarItem" or context.get("delivery"):
            return
        if not attendee_addresses(item.props) or not is_organizer_copy(item):
            return
        item.props["IsMeeting"] = True
        for name in ("RequiredAttendees", "OptionalAttendees", "Resources"):
            for attendee in item.props.get(name) or []:
                attendee.setdefault("ResponseType", "Unknown")
        if context.get("send_invitations") in SEND_TO_ALL:
            item.props["MeetingRequestWasSent"] = True
            self._later(lambda: self.deliver(item.id))

    def after_update(self, before: Item, item: Item, context: dict[str, Any]) -> None:
        if item.kind != "CalendarItem" or context.get("delivery") or not is_organizer_copy(item):
            return
        if context.get("send_invitations") not in SEND_TO_ALL:
            return
        removed = {a.lower() for a in attendee_addresses(before.props)} - {a.lower() for a in attendee_addresses(item.props)}
        self._later(lambda: self.deliver(item.id, cancel_for=removed))

    def before_delete(self, item: Item, context: dict[str, Any]) -> None:
        if item.kind != "CalendarItem" or context.get("delivery") or not is_organizer_copy(item):
            return
        if context.get("send_invitations") in SEND_TO_ALL:
            snapshot = copy.deepcopy(item)
            self._later(lambda: self.cancel_copies(snapshot))

    # ---- delivery --------------------------------------------------------------------------------
    def _later(self, action: Callable[[], None]) -> None:
        if self.delivery_delay <= 0:
            action()
            return

        def run() -> None:
            with self.store.lock:
                action()

        timer = threading.Timer(self.delivery_delay, run)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def deliver(self, organizer_item_id: str, cancel_for: set[str] | frozenset[str] = frozenset()) -> None:
        """Create or update the invitee copies of a meeting (the organizer's copy is the source)."""
        try:
            # read live (delivery runs under the store lock, and copies what it takes below)
            source = self.store.live_item(organizer_item_id)
        except StoreError:  # deleted before a delayed delivery ran
            return
        shared = {k: plain_copy(source.props[k]) for k in SHARED_PROPS if k in source.props}
        shared.setdefault("Organizer", self._mailbox_of(source.mailbox))
        if "Recurrence" in shared:
            # The invitee's series takes the organizer's exceptions as they are, none included
            # (an update that writes the pattern and its exceptions at once keeps them).
            shared.setdefault("_exceptions", {})
            shared.setdefault("_deleted", [])
        for address in attendee_addresses(source.props):
            if address.lower() == source.mailbox.lower() or not self.store.has_mailbox(address):
                continue
            existing = self.copy_in(address, shared.get("UID", ""))
            if existing is None:
                props = {
                    **shared,
                    "IsMeeting": True,
                    "MyResponseType": "NoResponseReceived",
                    "LegacyFreeBusyStatus": "Tentative",
                    "IsResponseRequested": True,
                }
                calendar = self.store.distinguished_folder_id(address, "calendar")
                made = self.store.add_item(calendar, "CalendarItem", props, context={"delivery": True})
                self._request_in_inbox(address, made, shared, "NewMeetingRequest")
            else:
                updated = self.store.update_item(
                    existing.id, set_props={**shared, "IsCancelled": False}, context={"delivery": True, "occurrence": "*"}
                )
                self._request_in_inbox(address, updated.id, shared, "FullUpdate")
        for address in cancel_for:
            if not self.store.has_mailbox(address):
                continue  # someone outside the simulator: nothing to cancel here
            existing = self.copy_in(address, shared.get("UID", ""))
            if existing is not None:
                self._mark_cancelled(existing)

    def _request_in_inbox(self, address: str, calendar_copy_id: str, shared: dict[str, Any], kind: str) -> None:
        """The MeetingRequest message Exchange puts in the attendee's Inbox beside the calendar copy."""
        # `shared` is deliver's own copy, and the store copies what it stores: no copy of it here
        props = {k: v for k, v in shared.items() if k in REQUEST_PROPS}
        props.update(
            {
                "ItemClass": "IPM.Schedule.Meeting.Request",
                "From": shared.get("Organizer") or {},
                "IsRead": False,
                "IsResponseRequested": True,
                "MeetingRequestType": kind,
                "IntendedFreeBusyStatus": "Busy",
                "_calendar_item": calendar_copy_id,
            }
        )
        inbox = self.store.distinguished_folder_id(address, "inbox")
        self.store.add_item(inbox, "MeetingRequest", props, context={"delivery": True})

    def calendar_item_of(self, request: Item) -> Item:
        """The attendee's calendar copy a MeetingRequest stands for."""
        try:
            return self.store.item(request.props.get("_calendar_item", ""))
        except StoreError:
            found = self.copy_in(request.mailbox, request.props.get("UID", ""))
            if found is None:
                raise StoreError("ErrorItemNotFound", "The meeting of this request was not found.") from None
            return found

    def cancel_copies(self, organizer_item: Item) -> None:
        uid = organizer_item.props.get("UID", "")
        for address in attendee_addresses(organizer_item.props):
            if self.store.has_mailbox(address) and address.lower() != organizer_item.mailbox.lower():
                existing = self.copy_in(address, uid)
                if existing is not None:
                    self._mark_cancelled(existing)

    def _mark_cancelled(self, item: Item) -> None:
        subject = item.props.get("Subject") or ""
        if not subject.startswith("Canceled: "):
            subject = f"Canceled: {subject}"
        self.store.update_item(
            item.id, set_props={"IsCancelled": True, "Subject": subject, "LegacyFreeBusyStatus": "Free"}, context={"delivery": True}
        )

    def copy_in(self, address: str, uid: str) -> Item | None:
        """The calendar item with this UID in a mailbox (any folder but Deleted Items)."""
        deleted = self.store.distinguished_folder_id(address, "deleteditems")
        return self.store.find_item_with(address, "CalendarItem", "UID", uid, lambda i: i.folder_id != deleted)

    def _mailbox_of(self, address: str) -> dict[str, str]:
        mailbox = self.store.live_mailbox(address)
        return {"Name": mailbox.display_name, "EmailAddress": mailbox.address, "RoutingType": "SMTP", "MailboxType": "Mailbox"}

    # ---- attendee side ---------------------------------------------------------------------------
    def respond(self, item_id: str, response: str, send: bool = True) -> Item:
        with self.store.lock:
            item = self.store.update_item(
                item_id,
                set_props={"MyResponseType": response, "LegacyFreeBusyStatus": FREE_BUSY_FOR.get(response, "Busy")},
                context={"delivery": True},
            )
            if send:
                self._record_response(item, response)
            if response == "Decline":
                deleted = self.store.distinguished_folder(item.mailbox, "deleteditems")
                return self.store.move_item(item.id, deleted.id)
            return item

    def _record_response(self, invitee_copy: Item, response: str) -> None:
        organizer = organizer_address(invitee_copy)
        if organizer == invitee_copy.mailbox.lower() or not self.store.has_mailbox(organizer):
            return
        source = self.copy_in(organizer, invitee_copy.props.get("UID", ""))
        if source is None:
            return
        now = self.store.clock.now().astimezone(UTC)

        def record(item: Item) -> None:
            for name in ("RequiredAttendees", "OptionalAttendees", "Resources"):
                for attendee in item.props.get(name) or []:
                    if (attendee.get("Mailbox") or {}).get("EmailAddress", "").lower() == invitee_copy.mailbox.lower():
                        attendee["ResponseType"] = response
                        attendee["LastResponseTime"] = now

        # The organizer did nothing, yet the change key of their copy moves, as in Exchange.
        self.store.update_item(source.id, merge=record, context={"delivery": True})

    def cancel(self, item_id: str, save_copy: bool = True) -> Item | None:
        """CancelCalendarItem: cancellations go out and the organizer's copy goes to Deleted Items; the
        cancellation message sent is kept in Sent Items (returned) unless the disposition is SendOnly."""
        with self.store.lock:
            item = self.store.item(item_id)
            invited = {a.lower() for a in attendee_addresses(item.props)}
            if invited and invited <= {organizer_address(item)}:
                # the organizer invited only themselves: a cancellation would go to no valid recipient
                raise StoreError("ErrorInvalidRecipients", "At least one recipient isn't valid.")
            self.store.delete_item(item_id, "MoveToDeletedItems", context={"send_invitations": "SendToAllAndSaveCopy"})
            if not save_copy:
                return None
            subject = item.props.get("Subject") or ""
            props = {k: plain_copy(item.props[k]) for k in REQUEST_PROPS if k in item.props}
            props.update(
                {
                    "Subject": subject if subject.startswith("Canceled: ") else f"Canceled: {subject}",
                    "ItemClass": "IPM.Schedule.Meeting.Canceled",
                    "From": item.props.get("Organizer") or {},
                    "IsRead": True,
                }
            )
            sent = self.store.distinguished_folder(item.mailbox, "sentitems")
            return self.store.create_item(sent.id, "MeetingCancellation", props, context={"delivery": True})

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()


def meetings_for(store: Store) -> Meetings:
    """The store's meeting behaviour, installed once per store."""
    found = store.extensions.get("meetings")
    if found is None:
        found = Meetings(store)
        store.extensions["meetings"] = found
        store.add_hook("after_create", found.after_create)
        store.add_hook("after_update", found.after_update)
        store.add_hook("before_delete", found.before_delete)
    return found


def respond(store: Store, item_id: str, response: str, send: bool = True) -> Item:
    return meetings_for(store).respond(item_id, response, send)


def cancel(store: Store, item_id: str, save_copy: bool = True) -> Item | None:
    return meetings_for(store).cancel(item_id, save_copy)


def install(simulator: Any) -> None:
    simulator.meetings = meetings_for(simulator.store)


__all__ = ["Meetings", "attendee_addresses", "cancel", "install", "respond"]
