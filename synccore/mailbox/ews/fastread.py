"""GetItem answers of calendar items read straight from the XML into ``CalendarEvent`` (issue 17:
exchangelib's ``CalendarItem.from_xml`` builds ~90 fields through recursive EWSElement parsing,
about 1 ms per item, for the two dozen values ``translation.from_calendar_item`` reads).

An ``EventReader`` gives what ``from_calendar_item`` (with ``read_properties`` and
``exception_ids``) gives for exchangelib's item from the same element, or None. None means "not understood here":
the caller then has exchangelib parse that element as before, so an item of another class, a
value in an unusual form (a naive or fractional time, an unknown zone, a body type exchangelib
does not know) or an element whose parsing could fail in exchangelib comes out exactly as it did,
errors included. The element is never modified, so exchangelib can still read it.

tests/test_ews_fast_read.py checks, for generated calendar items as the simulator answers them
(and variants of their XML), that the event read here equals exchangelib's parse followed by
``from_calendar_item``, field by field, or that the item is left to exchangelib.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from exchangelib import CalendarItem, EWSTimeZone
from exchangelib.extended_properties import ExtendedProperty
from exchangelib.fields import (
    BooleanField,
    CharField,
    CharListField,
    ChoiceField,
    CultureField,
    DateTimeField,
    ExtendedPropertyField,
    FieldPath,
    FieldURIField,
    FreeBusyStatusField,
    IntegerField,
    TextField,
    URIField,
)
from exchangelib.recurrence import Recurrence
from exchangelib.util import TNS

from synccore.mailbox import base
from synccore.mailbox.base import CalendarEvent, RemoteRef
from synccore.mailbox.ews.translation import (
    _IANA_ZONES,
    SYNC_ID_FIELD,
    all_day_end,
    ews_timezone,
    property_field,
    recurrence_to_rrule,
)

_T = "{" + TNS + "}"
_CALENDAR_ITEM = CalendarItem.response_tag()

# The exchangelib fields ``from_calendar_item`` reads: the only ones a GetItem for events asks for.
EVENT_FIELDS = (
    "subject",
    "body",
    "location",
    "start",
    "end",
    "is_all_day",
    "_start_timezone",
    "_end_timezone",
    "sensitivity",
    "reminder_is_set",
    "reminder_minutes_before_start",
    "organizer",
    "uid",
    "is_meeting",
    "is_cancelled",
    "my_response_type",
    "last_modified_time",
    "duration",
    "required_attendees",
    "optional_attendees",
    "recurrence",
    "modified_occurrences",
    "deleted_occurrences",
    SYNC_ID_FIELD,
)


def event_fields(properties: Sequence[str]) -> list[FieldPath]:
    """What a GetItem for events asks for: the fields above and the named properties."""
    names = [*EVENT_FIELDS, *(property_field(name, CalendarItem) for name in properties)]
    return [FieldPath(field=CalendarItem.get_field_by_fieldname(name)) for name in dict.fromkeys(names)]


@dataclass
class ReadEvent:
    """An event read here; ``exception_ids``: item ids of its modified occurrences (as
    ``translation.exception_ids``). Its ref has no folder id: the caller knows it."""

    event: CalendarEvent
    exception_ids: list[str] = field(default_factory=list)


class _NotCovered(Exception):
    """An element this module leaves to exchangelib."""


# Child elements read here, and the other fields of CalendarItem whose parsing in exchangelib
# cannot fail (a scalar value: a text it cannot convert is None; or an element of such values).
# A child of any other CalendarItem field (an attachment, a MeetingTimeZone, resources...) leaves
# the item to exchangelib, which may read it differently or fail on it; children of no field are
# ignored by exchangelib and here.
_READ = {
    _T + tag
    for tag in (
        "ItemId",
        "Subject",
        "Body",
        "Location",
        "Start",
        "End",
        "IsAllDayEvent",
        "StartTimeZone",
        "EndTimeZone",
        "Sensitivity",
        "ReminderIsSet",
        "ReminderMinutesBeforeStart",
        "Organizer",
        "UID",
        "IsMeeting",
        "IsCancelled",
        "MyResponseType",
        "LastModifiedTime",
        "Duration",
        "RequiredAttendees",
        "OptionalAttendees",
        "Recurrence",
        "ModifiedOccurrences",
        "DeletedOccurrences",
    )
}
_SCALAR_FIELDS = (
    BooleanField,
    CharField,
    CharListField,
    ChoiceField,
    CultureField,
    DateTimeField,
    FreeBusyStatusField,
    IntegerField,
    TextField,
    URIField,
)
_HARMLESS = {"parent_folder_id", "first_occurrence", "last_occurrence", "effective_rights", "conversation_id"}
_EXTENDED = _T + "ExtendedProperty"
_URI = _T + "ExtendedFieldURI"
_VALUE = _T + "Value"
_MAILBOX = _T + "Mailbox"
_ATTENDEE = _T + "Attendee"
_URI_ATTRIBUTES = (
    "DistinguishedPropertySetId",
    "PropertySetId",
    "PropertyTag",
    "PropertyName",
    "PropertyId",
    "PropertyType",
)


@dataclass
class _Schema:
    """What this module knows of CalendarItem's fields as registered now."""

    risky: frozenset[str]  # child tags that leave an item to exchangelib
    # ExtendedFieldURI attributes → the fields of plain string properties with that URI (read
    # here), or None where a property of another kind has it (left to exchangelib).
    extended: dict[tuple[str | None, ...], tuple[str, ...] | None]


_schemas: dict[tuple[str, ...], _Schema] = {}


def _schema() -> _Schema:
    key = tuple(f.name for f in CalendarItem.FIELDS)  # properties are registered as they are used
    found = _schemas.get(key)
    if found is None:
        risky: set[str] = set()
        extended: dict[tuple[str | None, ...], tuple[str, ...] | None] = {}
        for f in CalendarItem.FIELDS:
            if isinstance(f, ExtendedPropertyField):
                uri = _property_key(f.value_cls)
                known = extended.get(uri, ())
                plain = known is not None and _plain_string(f.value_cls)
                extended[uri] = (*known, f.name) if plain else None
            elif isinstance(f, FieldURIField) and f.field_uri:
                tag = f.response_tag()
                if tag not in _READ and type(f) not in _SCALAR_FIELDS and f.name not in _HARMLESS:
                    risky.add(tag)
        found = _Schema(frozenset(risky), extended)
        _schemas[key] = found
    return found


def _property_key(cls: type[ExtendedProperty]) -> tuple[str | None, ...]:
    # As exchangelib matches a property (ExtendedProperty.is_property_instance): its URI, the
    # distinguished set and the set id aligned (a key with either is not read here).
    uri = cls._normalize_obj(cls.as_object())
    return (
        uri.distinguished_property_set_id,
        uri.property_set_id,
        uri.property_tag,
        uri.property_name,
        uri.property_id,
        uri.property_type,
    )


def _plain_string(cls: type[ExtendedProperty]) -> bool:
    return (
        not cls.is_array_type()
        and cls.python_type() is str
        and cls.distinguished_property_set_id is None
        and cls.property_set_id is not None
        and cls.property_set_id.lower() not in ExtendedProperty.DISTINGUISHED_SET_ID_TO_NAME_MAP
    )


class EventReader:
    """Reads the ``t:CalendarItem`` elements of a GetItem answer for events with the named
    properties: ``reader(elem)`` is the event, or None where exchangelib is to read the element."""

    def __init__(self, properties: Sequence[str] = ()) -> None:
        self.properties = {name: property_field(name, CalendarItem) for name in properties}
        self.schema = _schema()  # after the properties' fields are registered

    def __call__(self, elem: Any) -> ReadEvent | None:
        if elem.tag != _CALENDAR_ITEM:
            return None
        try:
            return _read(elem, self.schema, self.properties)
        except Exception:  # _NotCovered, or a value in a form not foreseen: exchangelib reads it
            return None


_BOOLEANS = {"true": True, "on": True, "false": False, "off": False}
_INSTANT = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z\Z")


def _text(elem: Any) -> str | None:
    return None if elem is None else (elem.text or None)


def _child_text(elem: Any, tag: str) -> str | None:
    return _text(elem.find(_T + tag))


def _boolean(elem: Any, default: bool | None) -> bool | None:
    text = _text(elem)
    return default if text is None else _BOOLEANS.get(text.lower())


def _instant(text: str | None) -> datetime | None:
    """A UTC time as Exchange writes it ("2027-03-01T09:00:00Z"); any other form is exchangelib's."""
    if text is None:
        return None
    found = _INSTANT.match(text)
    if found is None:
        raise _NotCovered
    return datetime(*map(int, found.groups()), tzinfo=UTC)


def _zone_key(elem: Any) -> str | None:
    if elem is None:
        return None
    key = EWSTimeZone.MS_TO_IANA_MAP.get(elem.get("Id") or elem.get("Name"))
    if key is None:
        raise _NotCovered  # exchangelib warns, tries the id as an IANA key, or fails
    return key


def _read(elem: Any, schema: _Schema, properties: dict[str, str]) -> ReadEvent:
    risky = schema.risky
    children: dict[str, Any] = {}
    extended: dict[str, str] = {}
    for child in elem:
        tag = child.tag
        if tag == _EXTENDED:
            _extended_property(child, schema, extended)
        elif tag in _READ:
            children.setdefault(tag, child)  # exchangelib reads the first
        elif tag in risky:
            raise _NotCovered

    def text(tag: str) -> str | None:
        return _text(children.get(_T + tag))

    item_id = children.get(_T + "ItemId")
    if item_id is None:
        raise _NotCovered
    start, end = _instant(text("Start")), _instant(text("End"))
    if start is None or end is None:
        raise _NotCovered
    start_key = _zone_key(children.get(_T + "StartTimeZone"))
    end_key = _zone_key(children.get(_T + "EndTimeZone"))
    if start_key is None:
        raise _NotCovered  # exchangelib's parse is reported as an unknown zone (InvalidItem)
    body = children.get(_T + "Body")
    body_text = _text(body)
    if body_text is not None and body.get("BodyType") not in ("Text", "HTML"):
        raise _NotCovered
    reminder_minutes: int | None = 0
    minutes = text("ReminderMinutesBeforeStart")
    if minutes is not None:
        try:
            reminder_minutes = int(minutes)
        except ValueError:
            reminder_minutes = None
    organizer = children.get(_T + "Organizer")
    if organizer is not None:
        mailbox = organizer.find(_MAILBOX)
        if mailbox is None:
            raise _NotCovered  # exchangelib raises
        organizer_address = (_child_text(mailbox, "EmailAddress") or "").lower()
    else:
        organizer_address = ""
    is_all_day = bool(_boolean(children.get(_T + "IsAllDayEvent"), False))
    zone = ews_timezone(start_key)
    event = CalendarEvent(
        subject=text("Subject") or "",
        body=body_text or "",
        location=text("Location") or "",
        is_all_day=is_all_day,
        time_zone=start_key,
        is_private=text("Sensitivity") in ("Private", "Confidential"),
        reminder_minutes=reminder_minutes if _boolean(children.get(_T + "ReminderIsSet"), False) else None,
        organizer=organizer_address,
        uid=text("UID") or "",
        is_meeting=bool(_boolean(children.get(_T + "IsMeeting"), None)),
        is_cancelled=bool(_boolean(children.get(_T + "IsCancelled"), None)),
        my_response=text("MyResponseType") or "",
        sync_id=extended.get(SYNC_ID_FIELD) or "",
        ref=RemoteRef(item_id.get("Id") or None, item_id.get("ChangeKey") or "", ""),
        last_modified=_instant(text("LastModifiedTime")),
    )
    if is_all_day:
        if end_key is None:
            raise _NotCovered  # exchangelib would take the machine's zone
        # As CalendarItem.from_xml: the local days of the start and of the end less one day.
        first = start.astimezone(zone).date()
        last = (end - timedelta(days=1)).astimezone(ews_timezone(end_key)).date()
        local = ZoneInfo(start_key) if start_key in _IANA_ZONES else UTC
        event.start_date = date(first.year, first.month, first.day)
        event.start = datetime.combine(event.start_date, datetime.min.time(), local).astimezone(UTC)
        event.end_date = all_day_end(event.start, text("Duration"), last, local)
        event.end = datetime.combine(event.end_date, datetime.min.time(), local).astimezone(UTC)
    else:
        event.start, event.end = start, end
    for tag, required in (("RequiredAttendees", True), ("OptionalAttendees", False)):
        group = children.get(_T + tag)
        if group is None:
            continue
        for attendee in group.iterchildren(_ATTENDEE):
            mailbox = attendee.find(_MAILBOX)
            address = None if mailbox is None else _child_text(mailbox, "EmailAddress")
            if address:
                event.attendees.append(
                    base.Attendee(
                        email=address.lower(),
                        name=_child_text(mailbox, "Name") or "",
                        required=required,
                        response=_child_text(attendee, "ResponseType") or "Unknown",
                    )
                )
    exception_ids: list[str] = []
    recurrence = children.get(_T + "Recurrence")
    if recurrence is not None:
        deleted = children.get(_T + "DeletedOccurrences")
        if deleted is not None:
            event.deleted_occurrences = [
                _instant(_child_text(d, "Start")) for d in deleted.iterchildren(_T + "DeletedOccurrence")
            ]
        modified = children.get(_T + "ModifiedOccurrences")
        if modified is not None:
            for occurrence in modified.iterchildren(_T + "Occurrence"):
                event.modified_occurrences.append(
                    base.Occurrence(
                        original_start=_instant(_child_text(occurrence, "OriginalStart")),
                        start=_instant(_child_text(occurrence, "Start")),
                        end=_instant(_child_text(occurrence, "End")),
                    )
                )
                occurrence_id = occurrence.find(_T + "ItemId")
                if occurrence_id is not None and occurrence_id.get("Id"):
                    exception_ids.append(occurrence_id.get("Id"))
        # The pattern is read by exchangelib itself (a few small elements, series only), from a
        # copy: its parsing empties the elements it reads, and this one may still be exchangelib's.
        event.recurrence = recurrence_to_rrule(Recurrence.from_xml(copy.deepcopy(recurrence), account=None))
    event.properties = {name: extended.get(field_name) or "" for name, field_name in properties.items()}
    return ReadEvent(event, exception_ids)


def _extended_property(elem: Any, schema: _Schema, values: dict[str, str]) -> None:
    uri = elem.find(_URI)
    if uri is None:
        raise _NotCovered  # exchangelib fails on it
    key = tuple(uri.get(name) or None for name in _URI_ATTRIBUTES)
    if key[0] is not None or (key[1] or "").lower() in ExtendedProperty.DISTINGUISHED_SET_ID_TO_NAME_MAP:
        raise _NotCovered  # a distinguished property set: matched by exchangelib's own rules
    if key not in schema.extended:
        return  # no field of CalendarItem: exchangelib ignores it too
    names = schema.extended[key]
    if names is None:
        raise _NotCovered
    for name in names:
        values.setdefault(name, _child_text(elem, "Value") or "")  # each field reads the first
