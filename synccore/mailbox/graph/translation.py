"""Translation between the engine's values and Microsoft Graph's JSON: contact cards, calendar
events, recurrences, time zones, the sync id property and the calendar's delta tokens.

Pure functions of their arguments: no request is sent from here (the backend operations send
what these build and read what they parse).
"""

from __future__ import annotations

import base64
import json
import zlib
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from synccore.mailbox import base, recurrence
from synccore.mailbox.base import CalendarEvent, ContactCard, ItemResult, RemoteRef

if TYPE_CHECKING:
    from synccore.mailbox.graph.client import Answer

SYNC_ID_PROPERTY_ID = f"String {{{base.PROPERTY_SET_ID}}} Name {base.SYNC_ID_PROPERTY}"
# Graph v1.0 contacts have no fax property: PidTagBusinessFaxNumber is what Outlook shows as
# "Business fax" (EWS's PhoneNumbers/BusinessFax).
BUSINESS_FAX_PROPERTY_ID = "String 0x3A24"


# --- The sync id, change keys, OData literals -------------------------------------------------


def odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sync_id_filter(sync_id: str) -> str:
    return (
        f"singleValueExtendedProperties/Any(ep: ep/id eq {odata_string(SYNC_ID_PROPERTY_ID)} "
        f"and ep/value eq {odata_string(sync_id)})"
    )


EXPAND_SYNC_ID = f"singleValueExtendedProperties($filter=id eq {odata_string(SYNC_ID_PROPERTY_ID)})"


def expand_properties(names: Iterable[str]) -> str:
    """``$expand`` of the sync id and the named extended properties of the product's set."""
    ids = [SYNC_ID_PROPERTY_ID, *(property_id(name) for name in names)]
    return "singleValueExtendedProperties($filter=" + " or ".join(f"id eq {odata_string(i)}" for i in ids) + ")"


def extended_value(entity: dict[str, Any], property_id: str) -> str:
    for prop in entity.get("singleValueExtendedProperties") or []:
        if str(prop.get("id", "")).lower() == property_id.lower():
            return str(prop.get("value") or "")
    return ""


def change_key_of(entity: dict[str, Any]) -> str:
    key = entity.get("changeKey")
    if key:
        return str(key)
    etag = str(entity.get("@odata.etag") or "")
    return etag.removeprefix("W/").strip('"')


def if_match(change_key: str) -> dict[str, str]:
    return {"If-Match": f'W/"{change_key}"'} if change_key else {}


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def item_results(answers: Sequence[Answer], folder_id: str) -> list[ItemResult]:
    """The answers of creates → one result per item, with the new item's ref (and the meeting
    UID Graph chose, for an event)."""
    return [
        ItemResult(
            ref=RemoteRef(a.body["id"], change_key_of(a.body), folder_id), uid=a.body.get("iCalUId") or ""
        )
        if a.ok
        else ItemResult(error=a.error())
        for a in answers
    ]


def deletion_results(refs: Sequence[RemoteRef], answers: Sequence[Answer]) -> list[ItemResult]:
    """The answers of deletes → one result per item; one already gone counts as deleted."""
    out = []
    for ref, answer in zip(refs, answers, strict=True):
        error = None if answer.ok else answer.error()
        gone = error is None or isinstance(error, base.ItemNotFound)
        out.append(ItemResult(ref=ref) if gone else ItemResult(error=error))
    return out


# --- Contact cards ⇄ Graph contacts -----------------------------------------------------------

_SIMPLE_FIELDS = {
    "given_name": "givenName",
    "middle_name": "middleName",
    "surname": "surname",
    "company_name": "companyName",
    "job_title": "jobTitle",
    "department": "department",
    "business_homepage": "businessHomePage",
    "office_location": "officeLocation",
    "assistant_name": "assistantName",
    "display_name": "displayName",
    "file_as": "fileAs",
    "notes": "personalNotes",
    "mobile_phone": "mobilePhone",
}
_EMAIL_FIELDS = ("email_address_1", "email_address_2", "email_address_3")
_BUSINESS_PHONES = ("business_phone", "business_phone_2")
ALL_CARD_FIELDS = (*ContactCard.MAPPED, "display_name", "file_as")
# Read-only or server-made properties left out when a contact is copied (a "move").
_NOT_COPIED = frozenset(
    {"id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId", "photo"}
)


def property_id(name: str) -> str:
    """The Graph id of a named extended property of the product's set (a custom CRM field)."""
    return f"String {{{base.PROPERTY_SET_ID}}} Name {name}"


def contact_body(card: ContactCard, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The Graph JSON of the named card fields (all of them when None); the sync id always."""
    wanted = set(ALL_CARD_FIELDS if names is None else names)
    if names is None:
        wanted |= {base.PROPERTY_PREFIX + name for name in card.properties}
    creating = names is None
    body: dict[str, Any] = {}
    for name, prop in _SIMPLE_FIELDS.items():
        if name in wanted:
            value = getattr(card, name) or None
            if value is not None or not creating:
                body[prop] = value
    if creating and not body.get("displayName"):
        body["displayName"] = card.file_as or "(no name)"
    if wanted & set(_EMAIL_FIELDS):
        # Graph keeps the addresses as a list: Email1..3 are its positions.
        body["emailAddresses"] = [{"address": getattr(card, n)} for n in _EMAIL_FIELDS if getattr(card, n)]
    if wanted & set(_BUSINESS_PHONES):
        body["businessPhones"] = [getattr(card, n) for n in _BUSINESS_PHONES if getattr(card, n)]
    if "home_phone" in wanted:
        body["homePhones"] = [card.home_phone] if card.home_phone else []
    if "business_address" in wanted:
        address = card.business_address
        parts = {
            "street": address.street,
            "city": address.city,
            "state": address.state,
            "postalCode": address.postal_code,
            "countryOrRegion": address.country,
        }
        parts = {k: v for k, v in parts.items() if v}
        if parts or not creating:
            body["businessAddress"] = parts or None
    extended = []
    if card.sync_id:
        extended.append({"id": SYNC_ID_PROPERTY_ID, "value": card.sync_id})
    if "business_fax" in wanted and (card.business_fax or not creating):
        extended.append({"id": BUSINESS_FAX_PROPERTY_ID, "value": card.business_fax})
    for name in sorted(n for n in wanted if n.startswith(base.PROPERTY_PREFIX)):
        value = card.property_value(name)
        if value or not creating:  # Graph cannot remove an extended property: cleared is empty
            extended.append({"id": property_id(name[len(base.PROPERTY_PREFIX) :]), "value": value})
    if extended:
        body["singleValueExtendedProperties"] = extended
    if creating:
        body = {k: v for k, v in body.items() if v not in ([], None)}
    return body


def copy_body(contact: dict[str, Any]) -> dict[str, Any]:
    """A contact as read, as the body of a create elsewhere (Graph v1.0 cannot move contacts)."""
    body = {
        key: value
        for key, value in contact.items()
        if key not in _NOT_COPIED and "@odata" not in key and value not in (None, [], "")
    }
    if "singleValueExtendedProperties" in body:
        body["singleValueExtendedProperties"] = [
            {"id": p["id"], "value": p.get("value")} for p in body["singleValueExtendedProperties"]
        ]
    return body


# --- Calendar: events ⇄ calendar events -------------------------------------------------------

_GRAPH_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_RESPONSES = {
    "none": "Unknown",
    "organizer": "Organizer",
    "tentativelyAccepted": "Tentative",
    "accepted": "Accept",
    "declined": "Decline",
    "notResponded": "NoResponseReceived",
}
_IANA_ZONES = frozenset(zoneinfo.available_timezones())
# What the engine's field names write on a Graph event (times and the all-day flag go together:
# Graph checks start, end and isAllDay against each other).
_EVENT_PROPERTIES = {
    "subject": ("subject",),
    "body": ("body",),
    "location": ("location",),
    "start": ("start", "end", "isAllDay"),
    "end": ("start", "end", "isAllDay"),
    "is_all_day": ("start", "end", "isAllDay"),
    "time_zone": ("start", "end", "isAllDay"),
    "is_private": ("sensitivity",),
    "reminder_minutes": ("isReminderOn", "reminderMinutesBeforeStart"),
    "attendees": ("attendees",),
    "recurrence": ("recurrence",),
}
EVENT_SELECT = (
    "id,changeKey,subject,body,location,start,end,isAllDay,originalStartTimeZone,sensitivity,"
    "isReminderOn,reminderMinutesBeforeStart,organizer,attendees,iCalUId,isOrganizer,isCancelled,"
    "responseStatus,recurrence,type,seriesMasterId,lastModifiedDateTime"
)
UTC_TIMES = 'outlook.timezone="UTC"'


def _zone(name: str) -> ZoneInfo:
    if name in _IANA_ZONES:
        return ZoneInfo(name)
    raise base.InvalidItem(f"Unknown time zone “{name}”: the event is not written rather than shifted.")


_UTC_NAMES = frozenset({"utc", "etc/utc", "tzone://microsoft/utc", "coordinated universal time"})


def iana_zone(graph_zone: str) -> str | None:
    """An event's zone as Graph names it (Windows or IANA) → IANA; None when unknown."""
    if not graph_zone or graph_zone.lower() in _UTC_NAMES:
        return "UTC"
    if graph_zone in _IANA_ZONES:
        return graph_zone
    mapped = WINDOWS_TO_OLSON.get(graph_zone, "")
    return mapped if mapped in _IANA_ZONES else None


def graph_time(moment: datetime, zone_name: str) -> dict[str, str]:
    local = moment.astimezone(_zone(zone_name)).replace(tzinfo=None)
    return {"dateTime": local.isoformat(timespec="seconds"), "timeZone": zone_name}


def _graph_date(day: date, zone_name: str) -> dict[str, str]:
    _zone(zone_name)
    return {"dateTime": f"{day.isoformat()}T00:00:00", "timeZone": zone_name}


def _parse_graph_time(value: dict[str, Any] | None) -> datetime | None:
    """A dateTimeTimeZone read with ``Prefer: outlook.timezone="UTC"`` → aware UTC."""
    if not value or not value.get("dateTime"):
        return None
    moment = datetime.fromisoformat(value["dateTime"][:19])
    zone = iana_zone(value.get("timeZone") or "UTC") or "UTC"
    return moment.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


_GRAPH_WEEK_INDEXES = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
_GRAPH_FREQUENCIES = {
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "absoluteMonthly": "MONTHLY",
    "relativeMonthly": "MONTHLY",
    "absoluteYearly": "YEARLY",
    "relativeYearly": "YEARLY",
}


def rrule_to_recurrence(rrule: str, first: date, zone_name: str) -> dict[str, Any]:
    """An RFC 5545 RRULE → a Graph patternedRecurrence (what Exchange can represent, as over EWS)."""
    try:
        p = recurrence.parse_rrule(rrule, first, "graph")
    except recurrence.Unrepresentable as exc:
        raise base.InvalidItem(str(exc)) from exc
    days = [_GRAPH_DAYS[d] for d in p.weekdays]
    pattern: dict[str, Any] = {"interval": p.interval}
    if p.freq == "DAILY":
        pattern["type"] = "daily"
    elif p.freq == "WEEKLY":
        pattern.update(type="weekly", daysOfWeek=days, firstDayOfWeek="monday")
    elif p.week_index:
        kind = "relativeMonthly" if p.freq == "MONTHLY" else "relativeYearly"
        pattern.update(type=kind, daysOfWeek=days, index=_GRAPH_WEEK_INDEXES[p.week_index])
    elif p.freq == "MONTHLY":
        pattern.update(type="absoluteMonthly", dayOfMonth=p.day_of_month)
    else:
        pattern.update(type="absoluteYearly", dayOfMonth=p.day_of_month)
    if p.freq == "YEARLY":
        pattern["month"] = p.month
    recurrence_range: dict[str, Any] = {"startDate": first.isoformat(), "recurrenceTimeZone": zone_name}
    if p.count is not None:
        recurrence_range.update(type="numbered", numberOfOccurrences=p.count)
    elif p.until is not None:
        recurrence_range.update(type="endDate", endDate=p.until.isoformat())
    else:
        recurrence_range["type"] = "noEnd"
    return {"pattern": pattern, "range": recurrence_range}


def recurrence_to_rrule(patterned: dict[str, Any]) -> str:
    """A Graph patternedRecurrence → the RRULE the EWS backend reads for the same series."""
    pattern, recurrence_range = patterned.get("pattern") or {}, patterned.get("range") or {}
    kind = str(pattern.get("type"))
    if kind not in _GRAPH_FREQUENCIES:
        return f"X-GRAPH-PATTERN={kind}"
    days = tuple(sorted(_GRAPH_DAYS.index(d.lower()) for d in pattern.get("daysOfWeek") or []))
    indexes = {name: number for number, name in _GRAPH_WEEK_INDEXES.items()}
    relative = kind.startswith("relative")
    end = recurrence_range.get("endDate") if recurrence_range.get("type") == "endDate" else None
    count = recurrence_range.get("numberOfOccurrences")
    return recurrence.to_rrule(
        recurrence.SeriesPattern(
            freq=_GRAPH_FREQUENCIES[kind],
            start=date.fromisoformat(recurrence_range.get("startDate") or "1970-01-01"),
            interval=int(pattern.get("interval") or 1),
            weekdays=days if kind == "weekly" or relative else (),
            day_of_month=0 if relative else int(pattern.get("dayOfMonth") or 0),
            month=int(pattern.get("month") or 0) if "Yearly" in kind else 0,
            week_index=indexes.get(str(pattern.get("index") or "first").lower(), 1) if relative else 0,
            count=int(count) if recurrence_range.get("type") == "numbered" and count else None,
            until=date.fromisoformat(end) if end else None,
        )
    )


def event_body(event: CalendarEvent, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The Graph JSON of the named event fields (all when None); the sync id always."""
    creating = names is None
    wanted: set[str] = set()
    for name in _EVENT_PROPERTIES if creating else names:
        wanted.update(_EVENT_PROPERTIES.get(name, ()))
    body: dict[str, Any] = {}
    if "subject" in wanted:
        body["subject"] = event.subject
    if "body" in wanted:
        body["body"] = {"contentType": "text", "content": event.body}
    if "location" in wanted:
        body["location"] = {"displayName": event.location}
    if "start" in wanted:
        zone_name = event.time_zone or "UTC"
        if event.is_all_day:
            body["start"] = _graph_date(event.start_date, zone_name)
            body["end"] = _graph_date(event.end_date, zone_name)
        else:
            body["start"] = graph_time(event.start, zone_name)
            body["end"] = graph_time(event.end, zone_name)
        body["isAllDay"] = event.is_all_day
    if "sensitivity" in wanted:
        body["sensitivity"] = "private" if event.is_private else "normal"
    if "isReminderOn" in wanted:
        body["isReminderOn"] = event.reminder_minutes is not None
        body["reminderMinutesBeforeStart"] = event.reminder_minutes or 0
    if "attendees" in wanted:
        body["attendees"] = [
            {
                "emailAddress": {"address": a.email, **({"name": a.name} if a.name else {})},
                "type": "required" if a.required else "optional",
            }
            for a in event.attendees
        ]
    if "recurrence" in wanted:
        if event.recurrence:
            zone_name = event.time_zone or "UTC"
            first = event.start_date if event.is_all_day else event.start.astimezone(_zone(zone_name)).date()
            body["recurrence"] = rrule_to_recurrence(event.recurrence, first, zone_name)
        else:
            body["recurrence"] = None
    extended = [{"id": SYNC_ID_PROPERTY_ID, "value": event.sync_id}] if event.sync_id else []
    named = sorted(event.properties) if creating else [
        n[len(base.PROPERTY_PREFIX) :] for n in sorted(names or ()) if n.startswith(base.PROPERTY_PREFIX)
    ]
    for name in named:
        value = event.properties.get(name, "")
        if value or not creating:  # Graph cannot remove an extended property: cleared is empty
            extended.append({"id": property_id(name), "value": value})
    if extended:
        body["singleValueExtendedProperties"] = extended
    return body


def event_from_graph(entity: dict[str, Any], folder_id: str, properties: Iterable[str] = ()) -> CalendarEvent:
    zone_name = iana_zone(entity.get("originalStartTimeZone") or "UTC")
    if zone_name is None:
        # Its times would shift across DST (and its dates could move): reported instead (K10).
        raise base.InvalidItem(
            f"“{entity.get('subject') or '(no subject)'}” uses a time zone this product does not know "
            f"({entity.get('originalStartTimeZone')}); it is not synchronized rather than shifted."
        )
    organizer = ((entity.get("organizer") or {}).get("emailAddress") or {}).get("address") or ""
    attendees = []
    for attendee in entity.get("attendees") or []:
        address = (attendee.get("emailAddress") or {}).get("address") or ""
        if address:
            attendees.append(
                base.Attendee(
                    email=address.lower(),
                    name=(attendee.get("emailAddress") or {}).get("name") or "",
                    required=attendee.get("type", "required") != "optional",
                    response=_RESPONSES.get((attendee.get("status") or {}).get("response") or "", ""),
                )
            )
    event = CalendarEvent(
        subject=entity.get("subject") or "",
        body=str((entity.get("body") or {}).get("content") or ""),
        location=str((entity.get("location") or {}).get("displayName") or ""),
        is_all_day=bool(entity.get("isAllDay")),
        time_zone=zone_name,
        is_private=entity.get("sensitivity") in ("private", "confidential"),
        reminder_minutes=entity.get("reminderMinutesBeforeStart") if entity.get("isReminderOn") else None,
        organizer=organizer.lower(),
        attendees=attendees,
        uid=entity.get("iCalUId") or "",
        # Graph has no IsMeeting: an event with attendees, or one this mailbox did not organize.
        is_meeting=bool(attendees) or entity.get("isOrganizer") is False,
        is_cancelled=bool(entity.get("isCancelled")),
        my_response=_RESPONSES.get((entity.get("responseStatus") or {}).get("response") or "", ""),
        sync_id=extended_value(entity, SYNC_ID_PROPERTY_ID),
        ref=RemoteRef(entity["id"], change_key_of(entity), folder_id),
        last_modified=parse_iso(entity.get("lastModifiedDateTime")),
        properties={name: extended_value(entity, property_id(name)) for name in properties},
    )
    if event.is_all_day:
        event.start_date, event.end_date = _all_day_dates(entity)
        event.start, event.end = _all_day_span(event.start_date, event.end_date, zone_name)
    else:
        event.start, event.end = _parse_graph_time(entity.get("start")), _parse_graph_time(entity.get("end"))
    if entity.get("recurrence"):
        event.recurrence = recurrence_to_rrule(entity["recurrence"])
    return event


def _all_day_dates(entity: dict[str, Any]) -> tuple[date, date]:
    """An all-day event's (or occurrence's) days: Graph gives them as midnights whatever zone the
    answer was asked in."""
    start_day = date.fromisoformat(str((entity.get("start") or {}).get("dateTime", ""))[:10])
    end_day = date.fromisoformat(str((entity.get("end") or {}).get("dateTime", ""))[:10])
    return start_day, max(end_day, start_day + timedelta(days=1))


def _all_day_span(start_day: date, end_day: date, zone_name: str) -> tuple[datetime, datetime]:
    # All-day events are dates: read in the event's own zone, as the EWS backend does.
    zone = ZoneInfo(zone_name)
    return (
        datetime.combine(start_day, time.min, zone).astimezone(UTC),
        datetime.combine(end_day, time.min, zone).astimezone(UTC),
    )


def instance_span(instance: dict[str, Any], series: CalendarEvent) -> tuple[datetime | None, datetime | None]:
    if instance.get("isAllDay", series.is_all_day):
        return _all_day_span(*_all_day_dates(instance), series.time_zone or "UTC")
    return _parse_graph_time(instance.get("start")), _parse_graph_time(instance.get("end"))


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- Calendar delta tokens ----------------------------------------------------------------------

TOKEN_PREFIX = "graph-calendar-1:"


@dataclass
class CalendarToken:
    """What a calendar sync token holds: the calendarView deltaLink, the end of its window (a
    calendarView is bounded; the window slides, K15) and the series masters seen in it with their
    change keys (a calendarView lists occurrences, not masters: a series deleted whole shows only
    as removed occurrences, so the masters are checked again)."""

    link: str
    window_end: datetime
    masters: dict[str, str] = field(default_factory=dict)

    def dump(self) -> str:
        raw = json.dumps({"l": self.link, "e": self.window_end.isoformat(), "m": self.masters}).encode()
        return TOKEN_PREFIX + base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode()

    @classmethod
    def load(cls, token: str) -> CalendarToken | None:
        if not token:
            return None
        if not token.startswith(TOKEN_PREFIX):
            raise base.InvalidSyncToken("The calendar token is not one of the Graph backend's.")
        try:
            data = json.loads(zlib.decompress(base64.urlsafe_b64decode(token[len(TOKEN_PREFIX) :])))
            return cls(data["l"], datetime.fromisoformat(data["e"]), dict(data.get("m") or {}))
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            raise base.InvalidSyncToken(f"The calendar token cannot be read ({exc}).") from exc
