"""Translation between the engine's values and exchangelib's items: contact cards ⇄ contacts,
calendar events ⇄ calendar items, RRULEs ⇄ EWS recurrences, time zones, and the sync id
property every item carries.

Pure functions of their arguments: no request is sent from here. Importing this module
registers the sync id property on exchangelib's Contact and CalendarItem.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from exchangelib import (
    Account,
    CalendarItem,
    Contact,
    EWSDate,
    EWSDateTime,
    EWSTimeZone,
    ExtendedProperty,
    Folder,
)
from exchangelib.indexed_properties import EmailAddress, PhoneNumber, PhysicalAddress
from exchangelib.properties import Attendee as EwsAttendee
from exchangelib.properties import Mailbox
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)

from synccore.mailbox import base, recurrence
from synccore.mailbox.base import CalendarEvent, ContactCard, RemoteRef

# --- The sync id property ---------------------------------------------------------------------


class SyncIdProperty(ExtendedProperty):
    property_set_id = base.PROPERTY_SET_ID
    property_name = base.SYNC_ID_PROPERTY
    property_type = "String"


SYNC_ID_FIELD = "synccore_sync_id"  # distinct from names tests may register
if SYNC_ID_FIELD not in {f.name for f in Contact.FIELDS}:
    Contact.register(SYNC_ID_FIELD, SyncIdProperty)
if SYNC_ID_FIELD not in {f.name for f in CalendarItem.FIELDS}:
    CalendarItem.register(SYNC_ID_FIELD, SyncIdProperty)


_PROPERTY_FIELD_PREFIX = "synccore_prop_"


def property_field(name: str, model: type = Contact) -> str:
    """The exchangelib field of the named extended property ``name`` of the product's property
    set on ``model`` (Contact, CalendarItem, Task: a custom CRM field), registered on first use."""
    attr = _PROPERTY_FIELD_PREFIX + name
    if attr not in {f.name for f in model.FIELDS}:
        prop = type(
            f"CustomProperty_{name}",
            (ExtendedProperty,),
            {"property_set_id": base.PROPERTY_SET_ID, "property_name": name, "property_type": "String"},
        )
        model.register(attr, prop)
    return attr


def set_properties(item: Any, properties: dict[str, str]) -> None:
    """An item's named extended properties (custom CRM fields); empty clears one."""
    for name, value in properties.items():
        setattr(item, property_field(name, type(item)), value or None)


def read_properties(item: Any, names: Iterable[str]) -> dict[str, str]:
    """The named extended properties an item was read with ('' for one it does not carry)."""
    return {name: str(getattr(item, property_field(name, type(item)), None) or "") for name in names}


# --- Translation of contact cards -------------------------------------------------------------

_PHONE_LABELS = {
    "business_phone": "BusinessPhone",
    "business_phone_2": "BusinessPhone2",
    "mobile_phone": "MobilePhone",
    "home_phone": "HomePhone",
    "business_fax": "BusinessFax",
}
_EMAIL_LABELS = {
    "email_address_1": "EmailAddress1",
    "email_address_2": "EmailAddress2",
    "email_address_3": "EmailAddress3",
}
_SIMPLE_FIELDS = {
    "given_name": "given_name",
    "middle_name": "middle_name",
    "surname": "surname",
    "company_name": "company_name",
    "job_title": "job_title",
    "department": "department",
    "business_homepage": "business_homepage",
    "office_location": "office",
    "assistant_name": "assistant_name",
    "display_name": "display_name",
    "file_as": "file_as",
    "notes": "body",
}


def ews_fields(card_fields: Iterable[str]) -> list[str]:
    """exchangelib field names for card fields (indexed fields are written whole)."""
    names: list[str] = []
    for name in card_fields:
        if name in _PHONE_LABELS:
            target = "phone_numbers"
        elif name in _EMAIL_LABELS:
            target = "email_addresses"
        elif name == "business_address":
            target = "physical_addresses"
        elif name.startswith(base.PROPERTY_PREFIX):
            target = property_field(name[len(base.PROPERTY_PREFIX) :])
        else:
            target = _SIMPLE_FIELDS[name]
        if target not in names:
            names.append(target)
    return names


def to_contact(card: ContactCard, account: Account, folder: Folder | None = None) -> Contact:
    address = card.business_address
    contact = Contact(
        account=account,
        folder=folder,
        email_addresses=[
            EmailAddress(label=label, email=getattr(card, name))
            for name, label in _EMAIL_LABELS.items()
            if getattr(card, name)
        ]
        or None,
        phone_numbers=[
            PhoneNumber(label=label, phone_number=getattr(card, name))
            for name, label in _PHONE_LABELS.items()
            if getattr(card, name)
        ]
        or None,
        physical_addresses=None
        if address.is_empty()
        else [
            PhysicalAddress(
                label="Business",
                street=address.street or None,
                city=address.city or None,
                state=address.state or None,
                zipcode=address.postal_code or None,
                country=address.country or None,
            )
        ],
        **{ews: (getattr(card, name) or None) for name, ews in _SIMPLE_FIELDS.items()},
    )
    if not contact.display_name:
        contact.display_name = card.file_as or "(no name)"
    if card.sync_id:
        setattr(contact, SYNC_ID_FIELD, card.sync_id)
    for name, value in card.properties.items():
        setattr(contact, property_field(name), value or None)
    if card.ref:
        contact.id, contact.changekey = card.ref.item_id, card.ref.change_key or None
    return contact


# exchangelib numbers relative days 1…7 (Monday…Sunday), then 8 = Day, 9 = Weekday, 10 = WeekendDay,
# and week indexes 1…4, then 5 = Last.
_EWS_DAY_SETS = {recurrence.EVERY_DAY: 8, recurrence.WEEKDAYS: 9, recurrence.WEEKEND: 10}
_DAY_SETS_BY_EWS = {number: days for days, number in _EWS_DAY_SETS.items()}


def _ews_day(days: tuple[int, ...]) -> int:
    return _EWS_DAY_SETS.get(days) or days[0] + 1


def _ews_week(index: int) -> int:
    return 5 if index == -1 else index


def rrule_to_recurrence(rrule: str, first: date) -> Recurrence:
    """An RFC 5545 RRULE → an EWS recurrence; raises Unrepresentable (a ValueError) for what
    Exchange cannot represent."""
    p = recurrence.parse_rrule(rrule, first, "ews")
    if p.freq == "DAILY":
        pattern = DailyPattern(interval=p.interval)
    elif p.freq == "WEEKLY":
        weekdays = [d + 1 for d in p.weekdays]
        pattern = WeeklyPattern(interval=p.interval, weekdays=weekdays, first_day_of_week=1)
    elif p.freq == "MONTHLY" and p.week_index:
        pattern = RelativeMonthlyPattern(
            interval=p.interval, weekday=_ews_day(p.weekdays), week_number=_ews_week(p.week_index)
        )
    elif p.freq == "MONTHLY":
        pattern = AbsoluteMonthlyPattern(interval=p.interval, day_of_month=p.day_of_month)
    elif p.week_index:
        pattern = RelativeYearlyPattern(
            weekday=_ews_day(p.weekdays), week_number=_ews_week(p.week_index), month=p.month
        )
    else:
        pattern = AbsoluteYearlyPattern(day_of_month=p.day_of_month, month=p.month)
    if p.count is not None:
        boundary = NumberedPattern(start=first, number=p.count)
    elif p.until is not None:
        boundary = EndDatePattern(start=first, end=p.until)
    else:
        boundary = NoEndPattern(start=first)
    result = Recurrence(pattern=pattern, boundary=boundary)
    # exchangelib checks its fields only while it sends a whole batch: checked here, a value it
    # refuses fails this item (InvalidItem), not the batch.
    result.clean()
    return result


def _relative_days(weekday: int) -> tuple[int, ...]:
    return _DAY_SETS_BY_EWS.get(int(weekday)) or (int(weekday) - 1,)


def recurrence_to_rrule(ews: Recurrence) -> str:
    pattern, boundary = ews.pattern, ews.boundary
    interval = int(getattr(pattern, "interval", 1) or 1)
    week_number = int(getattr(pattern, "week_number", 0) or 0)
    week_index = -1 if week_number == 5 else week_number
    if isinstance(pattern, DailyPattern):
        fields = {"freq": "DAILY"}
    elif isinstance(pattern, WeeklyPattern):
        fields = {"freq": "WEEKLY", "weekdays": tuple(sorted(int(d) - 1 for d in pattern.weekdays))}
    elif isinstance(pattern, AbsoluteMonthlyPattern):
        fields = {"freq": "MONTHLY", "day_of_month": pattern.day_of_month}
    elif isinstance(pattern, RelativeMonthlyPattern):
        fields = {"freq": "MONTHLY", "weekdays": _relative_days(pattern.weekday), "week_index": week_index}
    elif isinstance(pattern, AbsoluteYearlyPattern):
        fields = {"freq": "YEARLY", "day_of_month": pattern.day_of_month, "month": int(pattern.month)}
    elif isinstance(pattern, RelativeYearlyPattern):
        fields = {
            "freq": "YEARLY",
            "weekdays": _relative_days(pattern.weekday),
            "week_index": week_index,
            "month": int(pattern.month),
        }
    else:
        return f"X-EWS-PATTERN={type(pattern).__name__}"
    return recurrence.to_rrule(
        recurrence.SeriesPattern(
            start=boundary.start,
            interval=interval,
            count=boundary.number if isinstance(boundary, NumberedPattern) else None,
            until=boundary.end if isinstance(boundary, EndDatePattern) else None,
            **fields,
        )
    )


# Every zone this process has used, held. zoneinfo caches a subclass's instances (EWSTimeZone)
# only weakly, so each EWSTimeZone(key) whose last instance is gone reads and parses the zone file
# again (~75 µs; thousands per pass, in exchangelib's parsing too). Held here, each is a cache hit.
_ZONES: dict[str, EWSTimeZone] = {}


def keep_zone(zone: Any) -> None:
    """Hold an EWSTimeZone exchangelib made (e.g. from an item it read) for later lookups."""
    if isinstance(zone, EWSTimeZone):
        _ZONES.setdefault(zone.key, zone)


def ews_timezone(name: str) -> EWSTimeZone:
    key = name or "UTC"
    zone = _ZONES.get(key)
    if zone is not None:
        return zone
    try:
        zone = EWSTimeZone(key)
    except Exception as exc:  # exchangelib raises its own UnknownTimeZone
        raise base.InvalidItem(
            f"Unknown time zone “{name}”: the event is not written rather than shifted."
        ) from exc
    _ZONES[key] = zone
    return zone


ews_timezone("UTC")


def to_calendar_item(event: CalendarEvent, account: Account, folder: Folder | None = None) -> CalendarItem:
    tz = ews_timezone(event.time_zone)
    item = CalendarItem(account=account, folder=folder)
    item.subject = event.subject or None
    item.body = event.body or None
    item.location = event.location or None
    item.sensitivity = "Private" if event.is_private else "Normal"
    item.is_all_day = event.is_all_day
    if event.is_all_day:
        # exchangelib writes an all-day end date inclusively; ours is exclusive.
        item.start = EWSDate.from_date(_plain_date(event.start_date))
        item.end = EWSDate.from_date(_plain_date(event.end_date - timedelta(days=1)))
    else:
        item.start = EWSDateTime.from_datetime(event.start).astimezone(tz)
        item.end = EWSDateTime.from_datetime(event.end).astimezone(tz)
    item._start_timezone = item._end_timezone = tz
    item.reminder_is_set = event.reminder_minutes is not None
    item.reminder_minutes_before_start = event.reminder_minutes or 0
    attendees = [
        EwsAttendee(mailbox=Mailbox(email_address=a.email, name=a.name or None), response_type="Unknown")
        for a in event.attendees
        if a.required
    ]
    optional = [
        EwsAttendee(mailbox=Mailbox(email_address=a.email, name=a.name or None), response_type="Unknown")
        for a in event.attendees
        if not a.required
    ]
    item.required_attendees = attendees or None
    item.optional_attendees = optional or None
    if event.recurrence:
        first = event.start_date if event.is_all_day else event.start.astimezone(tz).date()
        try:
            item.recurrence = rrule_to_recurrence(event.recurrence, first)
        except ValueError as exc:
            raise base.InvalidItem(str(exc)) from exc
    if event.uid and not event.ref:
        item.uid = event.uid
    if event.sync_id:
        setattr(item, SYNC_ID_FIELD, event.sync_id)
    set_properties(item, event.properties)
    if event.ref:
        item.id, item.changekey = event.ref.item_id, event.ref.change_key or None
    return item


def _utc(value: datetime | None) -> datetime | None:
    """A plain aware UTC datetime (the engine never sees exchangelib's own classes)."""
    return None if value is None else datetime.fromtimestamp(value.timestamp(), UTC)


def from_calendar_item(item: CalendarItem, folder_id: str) -> CalendarEvent:
    if item.start is not None and getattr(item, "_start_timezone", None) is None:
        # exchangelib could not map the item's Windows zone: its times would be read as UTC
        # and shift across DST, so the item is reported instead (K10).
        raise base.InvalidItem(
            f"“{item.subject or '(no subject)'}” uses a time zone this product does not know; "
            "it is not synchronized rather than shifted."
        )
    keep_zone(getattr(item, "_start_timezone", None))
    tz_name = item._start_timezone.key if getattr(item, "_start_timezone", None) else "UTC"
    event = CalendarEvent(
        subject=item.subject or "",
        body=str(item.body or ""),
        location=item.location or "",
        is_all_day=bool(item.is_all_day),
        time_zone=tz_name,
        is_private=item.sensitivity in ("Private", "Confidential"),
        reminder_minutes=item.reminder_minutes_before_start if item.reminder_is_set else None,
        organizer=(item.organizer.email_address or "").lower() if item.organizer else "",
        uid=item.uid or "",
        is_meeting=bool(item.is_meeting),
        is_cancelled=bool(item.is_cancelled),
        my_response=item.my_response_type or "",
        sync_id=getattr(item, SYNC_ID_FIELD, None) or "",
        ref=RemoteRef(item.id, item.changekey or "", folder_id),
        last_modified=_utc(item.last_modified_time),
    )
    if item.is_all_day:
        zone = ZoneInfo(tz_name) if tz_name in _IANA_ZONES else UTC
        event.start_date = _plain_date(item.start)
        event.start = datetime.combine(event.start_date, datetime.min.time(), zone).astimezone(UTC)
        event.end_date = all_day_end(event.start, item.duration, item.end, zone)
        event.end = datetime.combine(event.end_date, datetime.min.time(), zone).astimezone(UTC)
    else:
        event.start, event.end = _utc(item.start), _utc(item.end)
    for attendee, required in [(a, True) for a in item.required_attendees or []] + [
        (a, False) for a in item.optional_attendees or []
    ]:
        if attendee.mailbox and attendee.mailbox.email_address:
            event.attendees.append(
                base.Attendee(
                    email=attendee.mailbox.email_address.lower(),
                    name=attendee.mailbox.name or "",
                    required=required,
                    response=attendee.response_type or "",
                )
            )
    if item.recurrence:
        event.recurrence = recurrence_to_rrule(item.recurrence)
        event.deleted_occurrences = [_utc(d.start) for d in item.deleted_occurrences or []]
        event.modified_occurrences = [
            base.Occurrence(
                original_start=_utc(o.original_start),
                start=_utc(o.start),
                end=_utc(o.end),
            )
            for o in item.modified_occurrences or []
        ]
    return event


def _plain_date(value: date) -> date:
    """A datetime.date, not exchangelib's EWSDate (the engine never sees exchangelib's classes)."""
    return date(value.year, value.month, value.day)


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def all_day_end(start: datetime, duration: str | None, last: date | None, zone) -> date:
    """The (exclusive) end day of an all-day item from its start, its Duration and its last day
    as exchangelib reads it. exchangelib turns the end into a date by taking 24 hours off the end
    in UTC, which lands a day early when the last day is 23 hours long (the spring DST change):
    the start plus the item's Duration is exact."""
    match = _DURATION.match(duration or "")
    if not match:
        return _plain_date(last) + timedelta(days=1)
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    end = (start + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)).astimezone(zone)
    return end.date() if end.time() == datetime.min.time() else end.date() + timedelta(days=1)


def exception_ids(item: CalendarItem) -> list[str]:
    """Item ids of a series' modified occurrences (their subject and location are read apart)."""
    return [o.id for o in item.modified_occurrences or [] if o.id] if item.recurrence else []


_EVENT_FIELDS = {
    "subject": ["subject"],
    "body": ["body"],
    "location": ["location"],
    "start": ["start", "_start_timezone", "is_all_day"],
    "end": ["end", "_end_timezone", "is_all_day"],
    "is_all_day": ["is_all_day", "start", "end"],
    "time_zone": ["start", "end", "_start_timezone", "_end_timezone"],
    "is_private": ["sensitivity"],
    "reminder_minutes": ["reminder_is_set", "reminder_minutes_before_start"],
    "attendees": ["required_attendees", "optional_attendees"],
    "recurrence": ["recurrence"],
}
_IANA_ZONES = frozenset(zoneinfo.available_timezones())


def event_fieldnames(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        if name.startswith(base.PROPERTY_PREFIX):
            out.append(property_field(name[len(base.PROPERTY_PREFIX) :], CalendarItem))
            continue
        for field_name in _EVENT_FIELDS[name]:
            if field_name not in out:
                out.append(field_name)
    return out
