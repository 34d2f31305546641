"""Calendars and events: CRUD, cancel, responses, instances, calendarView (delta: see calendar_delta).

Graph has no "send to none": creating or updating an event that has attendees sends the invitations
(the simulator delivers invitee copies through `exchange_sim.meetings`, as EWS SendToAllAndSaveCopy does);
deleting or cancelling the organizer's copy sends cancellations. ``transactionId`` makes a create
idempotent: a second create with the same id answers the event made by the first.

Times: ``start``/``end`` are ``{"dateTime", "timeZone"}`` with Windows or IANA zone names; answers are in
UTC unless ``Prefer: outlook.timezone="..."``. All-day events are floating: their midnights are answered in
whatever zone was asked for (as Outlook does). Recurrence is Graph's patternedRecurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from exchange_sim import calendar, meetings
from exchange_sim.graph import extended
from exchange_sim.graph.api import (
    GraphRequest,
    GraphResponse,
    check_if_match,
    collection,
    etag,
    no_content,
    ok,
    route,
)
from exchange_sim.graph.contacts import (
    body_text,
    mailbox_folder,
    render_entity,
    render_items,
    unknown_property,
)
from exchange_sim.graph.errors import GraphError, bad_request
from exchange_sim.graph.ids import folder_graph_id
from exchange_sim.graph.values import local_text, parse_datetime, utc_text
from exchange_sim.graph.zones import iana_for, store_zone_id, windows_name, zone
from exchange_sim.store import Folder, Item

READ = ("Calendars.Read", "Calendars.ReadWrite")
WRITE = ("Calendars.ReadWrite",)
SEND = {"send_invitations": "SendToAllAndSaveCopy"}
QUIET = {"send_invitations": "SendToNone"}
NO_TIME = "0001-01-01T00:00:00Z"

RESPONSE = {
    "Unknown": "none",
    "Organizer": "organizer",
    "Tentative": "tentativelyAccepted",
    "Accept": "accepted",
    "Decline": "declined",
    "NoResponseReceived": "notResponded",
}
SHOW_AS = {"Free": "free", "Tentative": "tentative", "Busy": "busy", "OOF": "oof", "WorkingElsewhere": "workingElsewhere", "NoData": "unknown"}
SENSITIVITY = {"Normal": "normal", "Personal": "personal", "Private": "private", "Confidential": "confidential"}
IMPORTANCE = {"Low": "low", "Normal": "normal", "High": "high"}
ITEM_TYPE = {"Single": "singleInstance", "Occurrence": "occurrence", "Exception": "exception", "RecurringMaster": "seriesMaster"}
ATTENDEE_LISTS = {"required": "RequiredAttendees", "optional": "OptionalAttendees", "resource": "Resources"}
PATTERNS = {
    "daily": "DailyRecurrence",
    "weekly": "WeeklyRecurrence",
    "absoluteMonthly": "AbsoluteMonthlyRecurrence",
    "relativeMonthly": "RelativeMonthlyRecurrence",
    "absoluteYearly": "AbsoluteYearlyRecurrence",
    "relativeYearly": "RelativeYearlyRecurrence",
}
RANGES = {"endDate": "EndDateRecurrence", "noEnd": "NoEndRecurrence", "numbered": "NumberedRecurrence"}
DAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday"]
INDEXES = {"first": "First", "second": "Second", "third": "Third", "fourth": "Fourth", "last": "Last"}
MONTHS = list(calendar.MONTHS)
WRITABLE = {
    "subject",
    "body",
    "start",
    "end",
    "isAllDay",
    "location",
    "locations",
    "attendees",
    "recurrence",
    "sensitivity",
    "showAs",
    "importance",
    "isReminderOn",
    "reminderMinutesBeforeStart",
    "categories",
    "responseRequested",
    "transactionId",
    "singleValueExtendedProperties",
    "allowNewTimeProposals",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "hideAttendees",
    "organizer",
}
READ_ONLY = {
    "id",
    "@odata.etag",
    "@odata.type",
    "@odata.context",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "iCalUId",
    "type",
    "seriesMasterId",
    "originalStart",
    "originalStartTimeZone",
    "originalEndTimeZone",
    "isOrganizer",
    "isCancelled",
    "responseStatus",
    "webLink",
    "bodyPreview",
    "hasAttachments",
    "onlineMeeting",
    "onlineMeetingUrl",
    "isDraft",
}
EVENT_PROPS = (WRITABLE | READ_ONLY) - {"@odata.etag", "@odata.type", "@odata.context", "singleValueExtendedProperties"}
OCCURRENCE_PROPS = {"Subject", "Body", "Start", "End", "StartTimeZone", "EndTimeZone", "IsAllDayEvent", "Location", "RequiredAttendees",
                    "OptionalAttendees", "Resources", "Sensitivity", "LegacyFreeBusyStatus", "Importance", "ReminderIsSet",
                    "ReminderMinutesBeforeStart", "Categories"}  # fmt: skip


# ---- time ---------------------------------------------------------------------------------------------
def answer_zone(request: GraphRequest) -> tuple[str, Any]:
    """(the timeZone label, the zone) answers are given in: Prefer outlook.timezone, else UTC."""
    name = request.prefer.time_zone or "UTC"
    return name, zone(name)


def when_json(
    request: GraphRequest, instant: datetime, all_day: bool, event_zone: str | None, answer: tuple[str, Any] | None = None
) -> dict[str, str]:
    """`answer`: answer_zone(request), when the caller has it already."""
    label, target = answer or answer_zone(request)
    # local_text reads the wall clock of an aware time: no replace() of the zone here
    if all_day:  # floating: the event's own midnight, labelled with the zone asked for
        local = instant.astimezone(calendar.zone_for(event_zone))
    else:
        local = instant.astimezone(target)
    return {"dateTime": local_text(local), "timeZone": label}


def parse_when(value: Any, name: str) -> tuple[datetime, str]:
    """A dateTimeTimeZone: (UTC instant, zone id for the store)."""
    if not isinstance(value, dict) or "dateTime" not in value:
        raise GraphError(400, "RequestBodyRead", f"'{name}' must be a dateTimeTimeZone object with dateTime and timeZone.")
    zone_name = value.get("timeZone") or "UTC"
    iana = iana_for(zone_name)
    text = value["dateTime"]
    if not isinstance(text, str):
        raise GraphError(400, "RequestBodyRead", f"Cannot convert the literal '{text}' to the expected type 'Edm.String' ({name}).")
    try:
        local = datetime.fromisoformat(text.strip())
    except ValueError:
        raise GraphError(400, "ErrorInvalidRequest", f"The value '{text}' of {name}.dateTime is not a valid date and time.") from None
    instant = local.astimezone(UTC) if local.tzinfo else local.replace(tzinfo=zone(iana)).astimezone(UTC)
    return instant, store_zone_id(zone_name)


def window(request: GraphRequest) -> tuple[datetime, datetime]:
    start, end = request.query.get("startDateTime"), request.query.get("endDateTime")
    if not start or not end:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
        )
    return parse_datetime(start, "startDateTime"), parse_datetime(end, "endDateTime")


# ---- recurrence ---------------------------------------------------------------------------------------
def recurrence_json(item: Item) -> dict[str, Any] | None:
    value = item.props.get("Recurrence")
    if not value:
        return None
    pattern, rng = value["pattern"], value["range"]
    kind = next(k for k, v in PATTERNS.items() if v == pattern["type"])
    days_text = str(pattern.get("DaysOfWeek") or "")
    if days_text == "Weekday":
        days = list(WEEKDAYS)
    elif days_text == "WeekendDay":
        days = ["saturday", "sunday"]
    elif days_text == "Day":
        days = list(DAYS)
    else:
        days = [d.lower() for d in days_text.split() if d.lower() in DAYS]
    month = pattern.get("Month")
    range_kind = next(k for k, v in RANGES.items() if v == rng["type"])
    return {
        "pattern": {
            "type": kind,
            "interval": int(pattern.get("Interval") or 1) if kind not in {"absoluteYearly", "relativeYearly"} else 1,
            "month": MONTHS.index(month) + 1 if month in MONTHS else 0,
            "dayOfMonth": int(pattern.get("DayOfMonth") or 0),
            "daysOfWeek": days,
            "firstDayOfWeek": str(pattern.get("FirstDayOfWeek") or "Sunday").lower(),
            "index": str(pattern.get("DayOfWeekIndex") or "First").lower(),
        },
        "range": {
            "type": range_kind,
            "startDate": str(rng.get("StartDate") or "")[:10],
            "endDate": str(rng.get("EndDate") or "0001-01-01")[:10],
            "recurrenceTimeZone": windows_name(item.props.get("StartTimeZone")),
            "numberOfOccurrences": int(rng.get("NumberOfOccurrences") or 0),
        },
    }


def invalid_recurrence(message: str) -> GraphError:
    return GraphError(400, "ErrorInvalidRecurrence", message)


def parse_recurrence(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("pattern"), dict) or not isinstance(value.get("range"), dict):
        raise invalid_recurrence("A recurrence needs a pattern and a range.")
    pattern, rng = value["pattern"], value["range"]
    kind = PATTERNS.get(pattern.get("type", ""))
    if kind is None:
        raise invalid_recurrence(f"Unknown recurrence pattern type '{pattern.get('type')}'.")
    interval = pattern.get("interval") or 1
    if not isinstance(interval, int) or interval < 1:
        raise invalid_recurrence("The recurrence interval must be a positive number.")
    days = [str(d).lower() for d in pattern.get("daysOfWeek") or []]
    if any(d not in DAYS for d in days):
        raise invalid_recurrence(f"Unknown day of week in {days}.")
    out: dict[str, Any] = {"type": kind, "Interval": str(interval)}
    short = pattern["type"]
    if short == "weekly":
        if not days:
            raise invalid_recurrence("A weekly recurrence needs daysOfWeek.")
        out["DaysOfWeek"] = " ".join(d.capitalize() for d in sorted(days, key=DAYS.index))
        out["FirstDayOfWeek"] = str(pattern.get("firstDayOfWeek") or "sunday").capitalize()
    if short in {"absoluteMonthly", "absoluteYearly"}:
        day = pattern.get("dayOfMonth")
        if not isinstance(day, int) or not 1 <= day <= 31:
            raise invalid_recurrence("An absolute recurrence needs dayOfMonth between 1 and 31.")
        out["DayOfMonth"] = str(day)
    if short in {"relativeMonthly", "relativeYearly"}:
        if not days:
            raise invalid_recurrence("A relative recurrence needs daysOfWeek.")
        if sorted(days) == sorted(DAYS):
            out["DaysOfWeek"] = "Day"
        elif sorted(days) == sorted(WEEKDAYS):
            out["DaysOfWeek"] = "Weekday"
        elif sorted(days) == ["saturday", "sunday"]:
            out["DaysOfWeek"] = "WeekendDay"
        elif len(days) == 1:
            out["DaysOfWeek"] = days[0].capitalize()
        else:
            raise invalid_recurrence("A relative recurrence takes one day, all weekdays, the weekend or every day.")
        index = INDEXES.get(str(pattern.get("index") or "first").lower())
        if index is None:
            raise invalid_recurrence(f"Unknown week index '{pattern.get('index')}'.")
        out["DayOfWeekIndex"] = index
    if short in {"absoluteYearly", "relativeYearly"}:
        month = pattern.get("month")
        if not isinstance(month, int) or not 1 <= month <= 12:
            raise invalid_recurrence("A yearly recurrence needs a month between 1 and 12.")
        out["Month"] = MONTHS[month - 1]
        out.pop("Interval")
    range_kind = RANGES.get(rng.get("type", ""))
    if range_kind is None:
        raise invalid_recurrence(f"Unknown recurrence range type '{rng.get('type')}'.")
    try:
        start_date = date.fromisoformat(str(rng.get("startDate")))
    except ValueError:
        raise invalid_recurrence("The recurrence range needs a startDate (yyyy-mm-dd).") from None
    range_out: dict[str, Any] = {"type": range_kind, "StartDate": start_date.isoformat()}
    if range_kind == "EndDateRecurrence":
        try:
            end_date = date.fromisoformat(str(rng.get("endDate")))
        except ValueError:
            raise invalid_recurrence("An endDate range needs an endDate (yyyy-mm-dd).") from None
        if end_date < start_date:
            raise invalid_recurrence("The recurrence endDate is before its startDate.")
        range_out["EndDate"] = end_date.isoformat()
    if range_kind == "NumberedRecurrence":
        count = rng.get("numberOfOccurrences")
        if not isinstance(count, int) or count < 1:
            raise invalid_recurrence("A numbered range needs numberOfOccurrences of at least 1.")
        range_out["NumberOfOccurrences"] = str(count)
    return {"pattern": out, "range": range_out}


# ---- rendering ----------------------------------------------------------------------------------------
def _mailbox_json(mailbox: dict[str, Any] | None) -> dict[str, Any]:
    mailbox = mailbox or {}
    address = mailbox.get("EmailAddress") or ""
    return {"emailAddress": {"name": mailbox.get("Name") or address, "address": address}}


def attendees_json(props: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for kind, element in ATTENDEE_LISTS.items():
        for attendee in props.get(element) or []:
            response_time = attendee.get("LastResponseTime")
            out.append(
                {
                    "type": kind,
                    "status": {"response": RESPONSE.get(attendee.get("ResponseType") or "Unknown", "none"), "time": utc_text(response_time) or NO_TIME},
                    **_mailbox_json(attendee.get("Mailbox")),
                }
            )
    return out


def _item_type(store: Any, item: Item) -> str:
    if item.props.get("_occurrence_of"):
        return "exception" if item.props.get("_changekey") else "occurrence"
    return "seriesMaster" if item.props.get("Recurrence") else "singleInstance"


def event_json(request: GraphRequest, item: Item, expand: list[str] | None = None, all_extended: bool = False) -> dict[str, Any]:
    props = item.props
    kind = _item_type(request.store, item)
    all_day = bool(props.get("IsAllDayEvent"))
    zone_id = props.get("StartTimeZone")
    # each once: an event answers its id, its body and its zone twice
    html = item.body_html
    text = body_text(html) if props.get("Body") else ""
    graph_id = request.graph_id(item.id, item)
    answer = answer_zone(request)
    location = props.get("Location") or ""
    organizer = props.get("Organizer") or {}
    is_organizer = meetings.is_organizer_copy(item)
    my_response = "Organizer" if is_organizer else (props.get("MyResponseType") or "NoResponseReceived")
    master_id = props.get("_occurrence_of")
    body: dict[str, Any] = {
        "@odata.etag": etag(item.changekey),
        "id": graph_id,
        "createdDateTime": utc_text(item.created),
        "lastModifiedDateTime": utc_text(item.modified),
        "changeKey": item.changekey,
        "categories": list(props.get("Categories") or []),
        "transactionId": props.get("_TransactionId"),
        "originalStartTimeZone": windows_name(zone_id),
        "originalEndTimeZone": windows_name(props.get("EndTimeZone") or zone_id),
        "iCalUId": props.get("UID"),
        "reminderMinutesBeforeStart": int(props.get("ReminderMinutesBeforeStart") or 15),
        "isReminderOn": bool(props.get("ReminderIsSet", True)),
        "hasAttachments": item.has_attachments,
        "subject": props.get("Subject"),
        "bodyPreview": text[:255],
        "importance": IMPORTANCE.get(props.get("Importance") or "Normal", "normal"),
        "sensitivity": SENSITIVITY.get(props.get("Sensitivity") or "Normal", "normal"),
        "isAllDay": all_day,
        "isCancelled": bool(props.get("IsCancelled")),
        "isOrganizer": is_organizer,
        "responseRequested": bool(props.get("IsResponseRequested", True)),
        "seriesMasterId": request.graph_id(master_id) if master_id else None,
        "showAs": SHOW_AS.get(props.get("LegacyFreeBusyStatus") or "Busy", "busy"),
        "type": kind,
        "webLink": f"https://outlook.office365.com/owa/?itemid={graph_id}&exvsurl=1&path=/calendar/item",
        "onlineMeetingUrl": None,
        "isOnlineMeeting": False,
        "onlineMeetingProvider": "unknown",
        "allowNewTimeProposals": True,
        "isDraft": False,
        "hideAttendees": False,
        "responseStatus": {"response": RESPONSE.get(my_response, "none"), "time": NO_TIME},
        "body": {"contentType": "text", "content": text} if request.prefer.text_body else {"contentType": "html", "content": html},
        "start": when_json(request, props["Start"], all_day, zone_id, answer),
        "end": when_json(request, props["End"], all_day, zone_id, answer),
        "location": {"displayName": location, "locationType": "default", "uniqueIdType": "unknown", "address": {}, "coordinates": {}},
        "locations": [{"displayName": location, "locationType": "default", "uniqueId": location, "uniqueIdType": "private"}] if location else [],
        "recurrence": recurrence_json(item) if kind == "seriesMaster" else None,
        "attendees": attendees_json(props),
        "organizer": _mailbox_json(organizer),
        "onlineMeeting": None,
    }
    if master_id:
        body["originalStart"] = utc_text(props["_original_start"])
    if all_extended:
        body["singleValueExtendedProperties"] = extended.render(item, None)
    elif expand is None or expand:
        body["singleValueExtendedProperties"] = extended.render(item, expand)
    return body


# ---- writing ------------------------------------------------------------------------------------------
def _attendees(value: Any, current: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(value, list):
        raise GraphError(400, "RequestBodyRead", "'attendees' must be an array.")
    known = {}
    for element in ATTENDEE_LISTS.values():
        for attendee in current.get(element) or []:
            known[((attendee.get("Mailbox") or {}).get("EmailAddress") or "").lower()] = attendee
    out: dict[str, list[dict[str, Any]]] = {element: [] for element in ATTENDEE_LISTS.values()}
    for entry in value:
        if not isinstance(entry, dict):
            raise GraphError(400, "RequestBodyRead", "An attendee must be an object.")
        email = entry.get("emailAddress") or {}
        address = email.get("address")
        if not isinstance(address, str) or "@" not in address:
            raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid: an attendee needs an email address.")
        element = ATTENDEE_LISTS.get(str(entry.get("type") or "required").lower())
        if element is None:
            raise GraphError(400, "RequestBodyRead", f"Unknown attendee type '{entry.get('type')}'.")
        previous = known.get(address.lower(), {})
        mailbox = {"Name": email.get("name") or address, "EmailAddress": address, "RoutingType": "SMTP", "MailboxType": "Mailbox"}
        attendee: dict[str, Any] = {"Mailbox": mailbox, "ResponseType": previous.get("ResponseType", "Unknown")}
        if previous.get("LastResponseTime"):
            attendee["LastResponseTime"] = previous["LastResponseTime"]
        out[element].append(attendee)
    return out


def _choice(value: Any, table: dict[str, str], name: str) -> str:
    inverse = {v.lower(): k for k, v in table.items()}
    if not isinstance(value, str) or value.lower() not in inverse:
        raise GraphError(400, "RequestBodyRead", f"The value '{value}' is not valid for '{name}'.")
    return inverse[value.lower()]


def event_changes(data: dict[str, Any], current: Item | None) -> tuple[dict[str, Any], list[str], dict[Any, Any]]:
    """An event body as store writes (set, delete, extended); PATCH semantics."""
    unknown = set(data) - WRITABLE - READ_ONLY
    if unknown:
        raise unknown_property(sorted(unknown)[0], "event")
    props = current.props if current is not None else {}
    set_props: dict[str, Any] = {}
    delete: list[str] = []

    def put(element: str, value: Any) -> None:
        if value is None or value == "" or value == []:
            delete.append(element)
        else:
            set_props[element] = value

    if "subject" in data:
        put("Subject", data["subject"])
    if "body" in data:
        content = data["body"] or {}
        if not isinstance(content, dict):
            raise GraphError(400, "RequestBodyRead", "'body' must be an itemBody object.")
        kind = "HTML" if str(content.get("contentType") or "text").lower() == "html" else "Text"
        put("Body", {"type": kind, "content": content.get("content") or ""} if content.get("content") else None)
    if "start" in data:
        set_props["Start"], set_props["StartTimeZone"] = parse_when(data["start"], "start")
    if "end" in data:
        set_props["End"], set_props["EndTimeZone"] = parse_when(data["end"], "end")
    if "isAllDay" in data:
        set_props["IsAllDayEvent"] = bool(data["isAllDay"])
    if "location" in data:
        location = data["location"] or {}
        put("Location", location.get("displayName") if isinstance(location, dict) else None)
    elif data.get("locations"):
        first = data["locations"][0] if isinstance(data["locations"], list) else {}
        put("Location", first.get("displayName") if isinstance(first, dict) else None)
    if "attendees" in data:
        for element, attendees in _attendees(data["attendees"] or [], props).items():
            put(element, attendees)
    if "recurrence" in data:
        put("Recurrence", parse_recurrence(data["recurrence"]) if data["recurrence"] else None)
    if "sensitivity" in data:
        set_props["Sensitivity"] = _choice(data["sensitivity"], SENSITIVITY, "sensitivity")
    if "showAs" in data:
        set_props["LegacyFreeBusyStatus"] = _choice(data["showAs"], SHOW_AS, "showAs")
    if "importance" in data:
        set_props["Importance"] = _choice(data["importance"], IMPORTANCE, "importance")
    if "isReminderOn" in data:
        set_props["ReminderIsSet"] = bool(data["isReminderOn"])
    if "reminderMinutesBeforeStart" in data:
        minutes = data["reminderMinutesBeforeStart"]
        if not isinstance(minutes, int) or minutes < 0:
            raise GraphError(400, "RequestBodyRead", "'reminderMinutesBeforeStart' must be a non-negative number.")
        set_props["ReminderMinutesBeforeStart"] = minutes
    if "categories" in data:
        put("Categories", list(data["categories"] or []))
    if "responseRequested" in data:
        set_props["IsResponseRequested"] = bool(data["responseRequested"])
    if "transactionId" in data and current is None and data["transactionId"]:
        set_props["_TransactionId"] = str(data["transactionId"])
    set_extended = extended.parse(current, data["singleValueExtendedProperties"]) if "singleValueExtendedProperties" in data else {}
    start = set_props.get("Start", props.get("Start"))
    end = set_props.get("End", props.get("End"))
    if current is None and (start is None or end is None):
        raise GraphError(400, "ErrorInvalidRequest", "An event needs a start and an end.")
    if start is not None and end is not None and end < start:
        raise GraphError(400, "ErrorInvalidRequest", "The end of an event must not be before its start.")
    return set_props, delete, set_extended


# ---- resolving ------------------------------------------------------------------------------------------
def resolve_calendar(request: GraphRequest, ref: str | None) -> Folder:
    return mailbox_folder(request, ref, "calendar", "IPF.Appointment")


def event_item(request: GraphRequest, graph_id: str, *, live: bool = False) -> Item:
    """An event (a single, a series master, or an occurrence/exception) of the request's mailbox.
    `live`: a single or master as stored, not a copy, for a handler that only renders it (under the
    store lock, as the routes run)."""
    assert request.mailbox is not None
    store_id = request.store_id(graph_id)
    split = calendar.split_occurrence_id(store_id)
    if split is not None:
        master = request.store.live_item(split[0]) if live else request.store.item(split[0])
        _check_event(request, master)
        return calendar.find_occurrence(request.store, split[0], original=split[1])
    item = request.store.live_item(store_id) if live else request.store.item(store_id)
    _check_event(request, item)
    return item


def _check_event(request: GraphRequest, item: Item) -> None:
    assert request.mailbox is not None
    if item.mailbox.lower() != request.mailbox.lower() or item.kind != "CalendarItem":
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def entity(request: GraphRequest, item: Item, status: int = 200, headers: dict[str, str] | None = None) -> GraphResponse:
    return render_entity(request, item, event_json, EVENT_PROPS, "event", status, headers)


def render_list(request: GraphRequest, items: list[Item], context: str) -> GraphResponse:
    return render_items(request, items, context, event_json, EVENT_PROPS, "event")


# ---- calendars ----------------------------------------------------------------------------------------
def calendar_json(request: GraphRequest, folder: Folder) -> dict[str, Any]:
    assert request.mailbox is not None
    owner = request.store.mailbox(request.mailbox)
    return {
        "id": folder_graph_id(folder.id),
        "name": folder.display_name,
        "color": "auto",
        "hexColor": "",
        "isDefaultCalendar": folder.distinguished == "calendar",
        "changeKey": folder.changekey,
        "canShare": True,
        "canViewPrivateItems": True,
        "canEdit": True,
        "allowedOnlineMeetingProviders": ["teamsForBusiness"],
        "defaultOnlineMeetingProvider": "teamsForBusiness",
        "isTallyingResponses": True,
        "isRemovable": folder.distinguished != "calendar",
        "owner": {"name": owner.display_name, "address": owner.address},
    }


@route("GET", "users/{user}/calendars", "graph.calendars.list", roles=READ)
def list_calendars(request: GraphRequest) -> GraphResponse:
    default = resolve_calendar(request, None)
    folders = [default] + [f for f in request.store.child_folders(default.id, deep=True) if f.folder_class == "IPF.Appointment"]
    return collection(request, [calendar_json(request, f) for f in folders], f"users('{request.mailbox}')/calendars")


@route("GET", "users/{user}/calendar", "graph.calendars.get", roles=READ)
def get_default_calendar(request: GraphRequest) -> GraphResponse:
    return ok(request, calendar_json(request, resolve_calendar(request, None)))


@route("GET", "users/{user}/calendars/{calendar}", "graph.calendars.get", roles=READ)
def get_calendar(request: GraphRequest) -> GraphResponse:
    return ok(request, calendar_json(request, resolve_calendar(request, request.params["calendar"])))


# ---- events -------------------------------------------------------------------------------------------
def _list_events(request: GraphRequest) -> GraphResponse:
    folder = resolve_calendar(request, request.params.get("calendar"))
    items = sorted(request.store.live_items(folder.id, "CalendarItem"), key=lambda i: i.created_seq)
    return render_list(request, items, f"users('{request.mailbox}')/events")


def _create_event(request: GraphRequest) -> GraphResponse:
    folder = resolve_calendar(request, request.params.get("calendar"))
    set_props, _, set_extended = event_changes(request.json(), None)
    transaction = set_props.get("_TransactionId")
    if transaction:
        # the first in the folder's order is the first in the mailbox's order among the folder's items
        existing = request.store.find_item_with(folder.mailbox, "CalendarItem", "_TransactionId", transaction, lambda i: i.folder_id == folder.id)
        if existing is not None:
            return entity(request, existing, 201)
    # rendered live, as stored after the create's hooks (meeting delivery): the handler holds the store lock
    item = request.store.live_item(request.store.add_item(folder.id, "CalendarItem", set_props, set_extended, context=dict(SEND)))
    location = request.url(f"users/{request.params['user']}/events/{request.graph_id(item.id, item)}")
    return entity(request, item, 201, {"Location": location})


def _get_event(request: GraphRequest) -> GraphResponse:
    return entity(request, event_item(request, request.params["id"], live=True))


def _update_event(request: GraphRequest) -> GraphResponse:
    item = event_item(request, request.params["id"])
    check_if_match(request, item.changekey)
    data = request.json()
    set_props, delete, set_extended = event_changes(data, item)
    context = SEND if meetings.is_organizer_copy(item) else QUIET
    if item.props.get("_occurrence_of"):
        if "recurrence" in data or set_extended:
            raise bad_request("An occurrence takes no recurrence or extended properties; change the series master.", "ErrorInvalidRequest")
        changes = {k: v for k, v in set_props.items() if k in OCCURRENCE_PROPS}
        changes.update({k: None for k in delete if k in OCCURRENCE_PROPS})
        updated = calendar.modify_occurrence(request.store, item, changes, context=dict(context))
        return entity(request, updated)
    # "written": as over EWS, a recurrence written again rebuilds the series (its exceptions go)
    written = {**context, "written": frozenset(set_props)}
    updated = request.store.update_item(item.id, set_props=set_props, delete_props=delete, set_extended=set_extended, context=written)
    return entity(request, updated)


def _delete_event(request: GraphRequest) -> GraphResponse:
    item = event_item(request, request.params["id"])
    check_if_match(request, item.changekey)
    context = SEND if meetings.is_organizer_copy(item) else QUIET
    if item.props.get("_occurrence_of"):
        calendar.delete_occurrence(request.store, item, context=dict(context))
    else:
        request.store.delete_item(item.id, "MoveToDeletedItems", context=dict(context))
    return no_content()


def _permanent_delete_event(request: GraphRequest) -> GraphResponse:
    item = event_item(request, request.params["id"])
    if item.props.get("_occurrence_of"):
        raise bad_request("An occurrence cannot be permanently deleted; delete it.", "ErrorInvalidRequest")
    context = SEND if meetings.is_organizer_copy(item) else QUIET
    request.store.delete_item(item.id, "HardDelete", context=dict(context))
    return no_content()


def _cancel_event(request: GraphRequest) -> GraphResponse:
    item = event_item(request, request.params["id"])
    if not meetings.is_organizer_copy(item):
        raise GraphError(400, "ErrorInvalidRequest", "Your request can't be completed. You need to be an organizer to cancel a meeting.")
    if item.props.get("_occurrence_of"):
        calendar.delete_occurrence(request.store, item, context=dict(SEND))
    else:
        meetings.cancel(request.store, item.id)
    return GraphResponse(202, None, {})


def _respond(response: str) -> Any:
    def handler(request: GraphRequest) -> GraphResponse:
        item = event_item(request, request.params["id"])
        if meetings.is_organizer_copy(item):
            raise GraphError(400, "ErrorInvalidRequest", "Your request can't be completed. You can't respond to a meeting you organized.")
        data = request.json() if request.body else {}
        meetings.respond(request.store, item.props.get("_occurrence_of") or item.id, response, bool(data.get("sendResponse", True)))
        return GraphResponse(202, None, {})

    return handler


def _instances(request: GraphRequest) -> GraphResponse:
    item = event_item(request, request.params["id"])
    start, end = window(request)
    if not item.props.get("Recurrence"):
        items = [item] if item.props["Start"] < end and item.props["End"] > start else []
    else:
        items = [
            calendar.occurrence_item(item, occ)
            for occ in calendar.occurrences(item, until=end)
            if not occ.deleted and occ.start < end and occ.end > start
        ]
    return render_list(request, items, f"users('{request.mailbox}')/events('{request.params['id']}')/instances")


def _calendar_view(request: GraphRequest) -> GraphResponse:
    folder = resolve_calendar(request, request.params.get("calendar"))
    start, end = window(request)
    return render_list(request, calendar.expand_view(request.store, folder.id, start, end), f"users('{request.mailbox}')/calendarView")


for _base in ("users/{user}", "users/{user}/calendar", "users/{user}/calendars/{calendar}"):
    route("GET", f"{_base}/events", "graph.events.list", roles=READ)(_list_events)
    route("POST", f"{_base}/events", "graph.events.create", roles=WRITE)(_create_event)
    route("GET", f"{_base}/events/{{id}}", "graph.events.get", roles=READ)(_get_event)
    route("PATCH", f"{_base}/events/{{id}}", "graph.events.update", roles=WRITE)(_update_event)
    route("DELETE", f"{_base}/events/{{id}}", "graph.events.delete", roles=WRITE)(_delete_event)
    route("POST", f"{_base}/events/{{id}}/permanentDelete", "graph.events.permanentDelete", roles=WRITE)(_permanent_delete_event)
    route("POST", f"{_base}/events/{{id}}/cancel", "graph.events.cancel", roles=WRITE)(_cancel_event)
    route("POST", f"{_base}/events/{{id}}/accept", "graph.events.accept", roles=WRITE)(_respond("Accept"))
    route("POST", f"{_base}/events/{{id}}/tentativelyAccept", "graph.events.tentativelyAccept", roles=WRITE)(_respond("Tentative"))
    route("POST", f"{_base}/events/{{id}}/decline", "graph.events.decline", roles=WRITE)(_respond("Decline"))
    route("GET", f"{_base}/events/{{id}}/instances", "graph.events.instances", roles=READ)(_instances)
    route("GET", f"{_base}/calendarView", "graph.calendarView.list", roles=READ)(_calendar_view)
