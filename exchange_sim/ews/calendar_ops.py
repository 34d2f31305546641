"""EWS translation for calendar specifics: occurrence ids, CalendarView, meeting response objects."""

from __future__ import annotations

from typing import Any

from exchange_sim import calendar, meetings
from exchange_sim.ews import operations
from exchange_sim.ews.operations import RequestContext
from exchange_sim.ews.xmlutil import Element, T, local, parse_datetime, t
from exchange_sim.store import Item, StoreError

RESPONSES = {"AcceptItem": "Accept", "TentativelyAcceptItem": "Tentative", "DeclineItem": "Decline"}


def resolve_item_ref(ctx: RequestContext, ref: Element) -> tuple[Item, str | None]:
    if local(ref) == "OccurrenceItemId":
        master_id = ref.get("RecurringMasterId", "")
        ctx.item(master_id)
        occurrence = calendar.find_occurrence(ctx.store, master_id, index=int(ref.get("InstanceIndex", "0")))
        return occurrence, ref.get("ChangeKey")
    occurrence_id = ref.get("OccurrenceId", "")
    split = calendar.split_occurrence_id(occurrence_id)
    master = ctx.item(split[0] if split else occurrence_id)
    return master, ref.get("ChangeKey")


def occurrence_by_id(ctx: RequestContext, item_id: str) -> Item | None:
    split = calendar.split_occurrence_id(item_id)
    if split is None:
        return None
    ctx.item(split[0])
    return calendar.find_occurrence(ctx.store, split[0], original=split[1])


def update_occurrence(
    ctx: RequestContext, occurrence: Item, changekey: str | None, resolution: str, kwargs: dict[str, Any], flags: dict[str, Any]
) -> Item:
    if changekey and changekey != occurrence.changekey and resolution != "AlwaysOverwrite":
        raise StoreError("ErrorIrresolvableConflict", "The change key passed in the request does not match the current change key.")
    before = dict(occurrence.props)
    for name in kwargs["delete_props"]:
        occurrence.props.pop(name, None)
    occurrence.props.update(kwargs["set_props"])
    if kwargs["merge"]:
        kwargs["merge"](occurrence)
    changes = {k: v for k, v in occurrence.props.items() if before.get(k) != v}
    # A cleared field is part of the exception too (e.g. no location for this one meeting).
    changes.update({k: None for k in kwargs["delete_props"] if before.get(k) is not None})
    return calendar.modify_occurrence(ctx.store, occurrence, changes, context=flags)


def delete_occurrence(ctx: RequestContext, occurrence: Item, flags: dict[str, Any]) -> None:
    calendar.delete_occurrence(ctx.store, occurrence, context=flags)


def calendar_view(ctx: RequestContext, folder: Any, view: Element) -> list[Item]:
    start = parse_datetime(view.get("StartDate", ""))
    end = parse_datetime(view.get("EndDate", ""))
    return calendar.expand_view(ctx.store, folder.id, start, end)


def referenced_item(ctx: RequestContext, elem: Element) -> Item:
    ref = elem.find(t("ReferenceItemId"))
    if ref is None:
        raise StoreError("ErrorMissingInformationReferenceItemId", "The reference item id is missing.")
    return ctx.item(ref.get("Id", ""))


def respond(ctx: RequestContext, elem: Element, flags: dict[str, Any]) -> Item | None:
    """Accept / tentatively accept / decline, through the calendar copy or the MeetingRequest in the Inbox."""
    item = referenced_item(ctx, elem)
    send = flags.get("disposition") != "SaveOnly"
    meeting = meetings.meetings_for(ctx.store)
    if item.kind == "MeetingRequest":
        request, item = item, meeting.calendar_item_of(item)
        meetings.respond(ctx.store, item.id, RESPONSES[local(elem)], send)
        ctx.store.delete_item(request.id, "MoveToDeletedItems", context={"delivery": True})
        return None
    meetings.respond(ctx.store, item.id, RESPONSES[local(elem)], send)
    return None


def cancel(ctx: RequestContext, elem: Element, flags: dict[str, Any]) -> Item | None:
    item = referenced_item(ctx, elem)
    return meetings.cancel(ctx.store, item.id, save_copy=flags.get("disposition") != "SendOnly")


def meeting_request_values(store: Any, item: Item) -> dict[str, Any]:
    """A MeetingRequest names the attendee's calendar copy (AssociatedCalendarItemId) with its change key now."""
    try:
        copy = meetings.meetings_for(store).calendar_item_of(item)
    except StoreError:
        return {}
    xml = f'<t:AssociatedCalendarItemId xmlns:t="{T}" Id="{copy.id}" ChangeKey="{copy.changekey}"/>'
    return {"AssociatedCalendarItemId": {"$xml": xml}}


def _extras(ctx: Any, operation: str) -> dict[str, Any]:
    return {
        "resolve_item_ref": resolve_item_ref,
        "occurrence_by_id": occurrence_by_id,
        "update_occurrence": update_occurrence,
        "delete_occurrence": delete_occurrence,
        "calendar_view": calendar_view,
    }


def install(simulator: Any) -> None:
    operations.COMPUTED["CalendarItem"] = calendar.computed_calendar
    operations.COMPUTED["MeetingRequest"] = meeting_request_values
    for name in RESPONSES:
        operations.RESPONSE_OBJECTS[name] = respond
    operations.RESPONSE_OBJECTS["CancelCalendarItem"] = cancel
    simulator.add_request_extras(_extras)
