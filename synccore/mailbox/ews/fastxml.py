"""Items to create, serialized straight from the engine's values into the XML exchangelib would
send for them (issue 17: exchangelib's generic clean and to_xml walk ~90 fields per item and cost
about half of the CPU of a create).

Each builder gives the element or None. None means "not covered here": the caller then builds the
exchangelib item as before (``translation.to_calendar_item`` / ``to_contact``), so a value
exchangelib refuses still fails that one item with exchangelib's own error, and what this module
does not know (a ref on a new item, an unusual type) is written exactly as before. So the fast
path only has to recognise ordinary values; it never decides that a value is bad.

tests/test_ews_fast_xml.py checks, for generated events and cards, that the element equals
exchangelib's own ``to_xml`` output (canonical XML) and that every value exchangelib refuses is
left to exchangelib.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from exchangelib import CalendarItem, Contact
from exchangelib.extended_properties import ExtendedProperty
from exchangelib.fields import ExtendedPropertyField
from exchangelib.util import TNS, safe_xml_value
from lxml import etree

from synccore.mailbox import base
from synccore.mailbox.base import CalendarEvent, ContactCard
from synccore.mailbox.ews.translation import (
    _EMAIL_LABELS,
    _PHONE_LABELS,
    SYNC_ID_FIELD,
    ews_timezone,
    property_field,
    rrule_to_recurrence,
)

_T = "{" + TNS + "}"
_CHAR_LIMIT = 255  # exchangelib's CharField: subject, names, mailbox addresses


def _t(parent: Any, tag: str, text: str) -> None:
    etree.SubElement(parent, _T + tag).text = text


def _text(value: Any) -> str | None:
    """A free text value as exchangelib writes it (illegal XML characters replaced by '?'); None
    for empty. Raises _NotCovered for a value that is not a str (exchangelib's TypeError)."""
    if not value:
        return None
    if type(value) is not str:
        raise _NotCovered
    return safe_xml_value(value)


def _char(value: Any) -> str | None:
    """A CharField value: also at most 255 characters (exchangelib's ValueError beyond)."""
    text = _text(value)
    if text is not None and len(value) > _CHAR_LIMIT:
        raise _NotCovered
    return text


class _NotCovered(Exception):
    """A value this module leaves to exchangelib (which may refuse it)."""


# --- Extended properties ----------------------------------------------------------------------

_uri_cache: dict[tuple[type, int, int], list[tuple[str, dict[str, str]]]] = {}


def _extended_fields(model: type, version: Any) -> list[tuple[str, dict[str, str]]]:
    """(field name, ExtendedFieldURI attributes) of the model's extended property fields, in the
    order exchangelib writes them (its field order: a property registered later comes first).
    The attributes come from exchangelib's own serialization of each field, once."""
    key = (model, id(model.FIELDS), len(model.FIELDS))
    found = _uri_cache.get(key)
    if found is None:
        found = []
        for f in model.FIELDS:
            if isinstance(f, ExtendedPropertyField) and issubclass(f.value_cls, ExtendedProperty):
                cls = f.value_cls
                if cls.is_array_type() or cls.python_type() is not str:
                    continue  # never written from here
                template = f.to_xml(cls(value="x"), version=version)
                found.append((f.name, dict(template[0].attrib)))
        _uri_cache[key] = found
    return found


def _extended_properties(parent: Any, model: type, version: Any, values: dict[str, Any]) -> None:
    """``values``: exchangelib field name → value (empty: not written, as exchangelib omits None)."""
    if not values:
        return
    written = 0
    for name, attrs in _extended_fields(model, version):
        value = values.get(name)
        if name not in values:
            continue
        written += 1
        text = _text(value)
        if text is None:
            continue
        prop = etree.SubElement(parent, _T + "ExtendedProperty")
        etree.SubElement(prop, _T + "ExtendedFieldURI", attrs)
        _t(prop, "Value", text)
    if written != len(values):
        raise _NotCovered  # a property field that is not a plain string one


def _property_values(model: type, sync_id: str, properties: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if sync_id:
        values[SYNC_ID_FIELD] = sync_id
    for name, value in properties.items():
        values[property_field(name, model)] = value
    return values


# --- Calendar items ---------------------------------------------------------------------------


def _ews_datetime(value: datetime, zone: Any) -> str:
    # EWSDateTime.ewsformat: "Z" for the UTC zone itself, the offset for any other.
    if zone.key == "UTC":
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()


def calendar_item_xml(event: CalendarEvent, version: Any) -> Any | None:
    """The ``t:CalendarItem`` element exchangelib would write for ``to_calendar_item(event)``,
    or None where this module leaves the event to exchangelib. Raises what ``to_calendar_item``
    raises for an unknown zone or a recurrence Exchange cannot represent (InvalidItem)."""
    if event.ref is not None:
        return None
    zone = ews_timezone(event.time_zone)  # InvalidItem for an unknown zone, as to_calendar_item
    try:
        return _calendar_item(event, zone, version)
    except _NotCovered:
        return None


def _calendar_item(event: CalendarEvent, zone: Any, version: Any) -> Any:
    if event.is_all_day:
        first, last = event.start_date, event.end_date
        if type(first) is not date or type(last) is not date or last <= first:
            raise _NotCovered  # exchangelib: end before start, or not a date
        # exchangelib writes an all-day item's dates as local midnights, the end day inclusive
        # plus one day (CalendarItem.date_to_datetime): that is our exclusive end.
        start = datetime.combine(first, datetime.min.time()).replace(tzinfo=zone)
        end = datetime.combine(last - timedelta(days=1), datetime.min.time()).replace(tzinfo=zone)
        end = end + timedelta(days=1)
        recurrence_first = first
    else:
        if type(event.start) is not datetime or type(event.end) is not datetime:
            raise _NotCovered
        if event.start.tzinfo is None or event.end.tzinfo is None or event.end < event.start:
            raise _NotCovered
        start, end = event.start.astimezone(zone), event.end.astimezone(zone)
        recurrence_first = start.date()
    reminder = event.reminder_minutes
    if reminder is not None and (type(reminder) is not int or reminder < 0):
        raise _NotCovered
    if type(event.is_all_day) is not bool or type(event.is_private) is not bool:
        raise _NotCovered

    item = etree.Element(_T + "CalendarItem")
    subject = _char(event.subject)
    if subject is not None:
        _t(item, "Subject", subject)
    _t(item, "Sensitivity", "Private" if event.is_private else "Normal")
    body = _text(event.body)
    if body is not None:
        etree.SubElement(item, _T + "Body", BodyType="Text").text = body
    _t(item, "Importance", "Normal")
    _t(item, "ReminderIsSet", "0" if reminder is None else "1")
    _t(item, "ReminderMinutesBeforeStart", str(reminder or 0))
    _extended_properties(
        item, CalendarItem, version, _property_values(CalendarItem, event.sync_id, event.properties)
    )
    uid = _text(event.uid)
    if uid is not None:
        _t(item, "UID", uid)
    _t(item, "Start", _ews_datetime(start, zone))
    _t(item, "End", _ews_datetime(end, zone))
    _t(item, "IsAllDayEvent", "1" if event.is_all_day else "0")
    _t(item, "LegacyFreeBusyStatus", "Busy")
    location = _text(event.location)
    if location is not None:
        _t(item, "Location", location)
    for required, tag in ((True, "RequiredAttendees"), (False, "OptionalAttendees")):
        attendees = [a for a in event.attendees if bool(a.required) == required]
        if attendees:
            group = etree.SubElement(item, _T + tag)
            for attendee in attendees:
                _attendee(group, attendee)
    if event.recurrence:
        # The recurrence is built and checked by exchangelib itself (rrule_to_recurrence): only a
        # series pays for it, and its checks (ranges of days, months, counts) stay exchangelib's.
        try:
            recurrence = rrule_to_recurrence(event.recurrence, recurrence_first)
        except ValueError as exc:
            raise base.InvalidItem(str(exc)) from exc
        item.append(recurrence.to_xml(version=version))
    etree.SubElement(item, _T + "StartTimeZone", Id=zone.ms_id)
    etree.SubElement(item, _T + "EndTimeZone", Id=zone.ms_id)
    return item


def _attendee(parent: Any, attendee: base.Attendee) -> None:
    email = _char(attendee.email)
    if email is None:
        raise _NotCovered  # exchangelib: a mailbox needs an address
    name = _text(attendee.name)
    element = etree.SubElement(parent, _T + "Attendee")
    mailbox = etree.SubElement(element, _T + "Mailbox")
    if name is not None:
        _t(mailbox, "Name", name)
    _t(mailbox, "EmailAddress", email)
    _t(mailbox, "RoutingType", "SMTP")
    _t(mailbox, "MailboxType", "Mailbox")
    _t(element, "ResponseType", "Unknown")


# --- Contacts ---------------------------------------------------------------------------------

# Contact fields between DisplayName and Surname in exchangelib's order: (tag, card field, char).
_CONTACT_NAMES = (
    ("GivenName", "given_name", True),
    ("MiddleName", "middle_name", True),
    ("CompanyName", "company_name", False),
)
_CONTACT_TAIL = (
    ("AssistantName", "assistant_name"),
    ("BusinessHomePage", "business_homepage"),
    ("Department", "department"),
    ("JobTitle", "job_title"),
    ("OfficeLocation", "office_location"),
)
_ADDRESS_PARTS = (
    ("Street", "street"),
    ("City", "city"),
    ("State", "state"),
    ("CountryOrRegion", "country"),
    ("PostalCode", "postal_code"),
)


def contact_xml(card: ContactCard, version: Any) -> Any | None:
    """The ``t:Contact`` element exchangelib would write for ``to_contact(card)``, or None where
    this module leaves the card to exchangelib."""
    if card.ref is not None:
        return None
    try:
        return _contact(card, version)
    except _NotCovered:
        return None


def _contact(card: ContactCard, version: Any) -> Any:
    item = etree.Element(_T + "Contact")
    _t(item, "Sensitivity", "Normal")
    body = _text(card.notes)
    if body is not None:
        etree.SubElement(item, _T + "Body", BodyType="Text").text = body
    _t(item, "Importance", "Normal")
    _t(item, "ReminderIsSet", "0")
    _t(item, "ReminderMinutesBeforeStart", "0")
    _extended_properties(item, Contact, version, _property_values(Contact, card.sync_id, card.properties))
    file_as = _text(card.file_as)
    if file_as is not None:
        _t(item, "FileAs", file_as)
    _t(item, "DisplayName", _text(card.display_name) or file_as or "(no name)")
    for tag, name, limited in _CONTACT_NAMES:
        text = _char(getattr(card, name)) if limited else _text(getattr(card, name))
        if text is not None:
            _t(item, tag, text)
    _entries(item, "EmailAddresses", card, _EMAIL_LABELS)
    address = card.business_address
    if not address.is_empty():
        group = etree.SubElement(item, _T + "PhysicalAddresses")
        entry = etree.SubElement(group, _T + "Entry", Key="Business")
        for tag, name in _ADDRESS_PARTS:
            text = _text(getattr(address, name))
            if text is not None:
                _t(entry, tag, text)
    _entries(item, "PhoneNumbers", card, _PHONE_LABELS)
    for tag, name in _CONTACT_TAIL:
        text = _text(getattr(card, name))
        if text is not None:
            _t(item, tag, text)
    _t(item, "PostalAddressIndex", "None")  # exchangelib's default, always written
    surname = _char(card.surname)
    if surname is not None:
        _t(item, "Surname", surname)
    return item


def _entries(parent: Any, tag: str, card: ContactCard, labels: dict[str, str]) -> None:
    values = [(label, _text(getattr(card, name))) for name, label in labels.items()]
    values = [(label, text) for label, text in values if text is not None]
    if values:
        group = etree.SubElement(parent, _T + tag)
        for label, text in values:
            etree.SubElement(group, _T + "Entry", Key=label).text = text
