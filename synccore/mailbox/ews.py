"""Exchange Server on premises through EWS: the only module that imports exchangelib.

Choices that matter (see DESIGN §7):
- an explicit service endpoint and server version: no autodiscover or version-probe round trips;
- folder objects are built from stored ids, so a pass in a fresh process does not walk the
  folder tree;
- every bulk call inspects its per-item results (exchangelib returns errors in the list);
- updates send only the named fields (a full ``save()`` rewrites times and empties fields);
- requests are counted by an HTTP adapter, per thread, for run records and tests.
"""

from __future__ import annotations

import logging
import re
import time
import zoneinfo
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests
import requests.adapters
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Build,
    CalendarItem,
    Configuration,
    Contact,
    Credentials,
    EWSDate,
    EWSDateTime,
    EWSTimeZone,
    ExtendedProperty,
    FaultTolerance,
    Folder,
    Identity,
    OAuth2Credentials,
    Q,
    Version,
)
from exchangelib import errors as ews_errors
from exchangelib.folders import SHALLOW, Calendar, Contacts, FolderCollection, Root
from exchangelib.indexed_properties import EmailAddress, PhoneNumber, PhysicalAddress
from exchangelib.items import SEND_TO_ALL_AND_SAVE_COPY, SEND_TO_NONE
from exchangelib.properties import Attendee as EwsAttendee
from exchangelib.properties import DistinguishedFolderId, Mailbox, OccurrenceItemId
from exchangelib.protocol import BaseProtocol, Protocol
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
from exchangelib.services import CreateFolder

from synccore.mailbox import base, recurrence
from synccore.mailbox.base import (
    CalendarEvent,
    ChangePage,
    ConnectionConfig,
    ContactCard,
    ItemResult,
    MailboxBackend,
    MailboxError,
    RemoteRef,
)
from synccore.mailbox.counting import RequestCounter

log = logging.getLogger(__name__)

SERVER_BUILD = Build(15, 1, 2507, 6)  # Exchange 2016 CU; every supported server speaks its schema
SYNC_PAGE = 512  # the largest MaxChangesReturned EWS allows
FIND_PAGE = 1000  # the largest IndexedPageItemView EWS allows


# --- Request counting -------------------------------------------------------------------------

_requests = RequestCounter()
requests_sent = _requests.sent  # every HTTP request this thread sent, retries included
BaseProtocol.HTTP_ADAPTER_CLS = _requests.adapter_class()


# --- Retry policy ---------------------------------------------------------------------------


class SyncRetryPolicy(FaultTolerance):
    """exchangelib's FaultTolerance, except that a 401 is not retried for minutes.

    FaultTolerance treats every 401 as throttling (some EWS servers answer 401 under load) and
    retries until max_wait, so a wrong password would stall every pass. Here a short burst of
    401s is retried after a second; the third 401 within half a minute is a credentials error.
    """

    UNAUTHORIZED_LIMIT = 3
    UNAUTHORIZED_WINDOW_S = 30.0

    def __init__(self, max_wait: float) -> None:
        super().__init__(max_wait=max_wait)
        self._recent_401s: list[float] = []

    def raise_response_errors(self, response):
        if response.status_code == 401:
            now = time.monotonic()
            self._recent_401s = [t for t in self._recent_401s if now - t < self.UNAUTHORIZED_WINDOW_S] + [now]
            if len(self._recent_401s) >= self.UNAUTHORIZED_LIMIT:
                raise ews_errors.UnauthorizedError(f"Invalid credentials for {response.url}")
            raise ews_errors.ErrorServerBusy("HTTP 401, retried once more", back_off=1)
        return super().raise_response_errors(response)


# --- The sync id property ---------------------------------------------------------------------


class SyncIdProperty(ExtendedProperty):
    property_set_id = base.PROPERTY_SET_ID
    property_name = base.SYNC_ID_PROPERTY
    property_type = "String"


SYNC_ID_FIELD = "synccore_sync_id"  # distinct from names tests may register
if SYNC_ID_FIELD not in {f.name for f in Contact.FIELDS}:
    Contact.register(SYNC_ID_FIELD, SyncIdProperty)


# --- Errors -----------------------------------------------------------------------------------

_PERMANENT_ITEM_ERRORS = (
    ews_errors.ErrorInvalidPropertyRequest,
    ews_errors.ErrorInvalidPropertySet,
    ews_errors.ErrorInvalidValueForProperty,
    ews_errors.ErrorPropertyUpdate,
    ews_errors.ErrorSchemaValidation,
    ews_errors.ErrorInvalidRequest,
    ews_errors.ErrorCorruptData,
)
_NOT_FOUND = (ews_errors.ErrorItemNotFound, ews_errors.ErrorFolderNotFound)


def translate(exc: Exception) -> MailboxError:
    """Map an exchangelib / transport exception to the backend error family."""
    if isinstance(exc, MailboxError):
        return exc
    name = type(exc).__name__
    message = f"{name}: {exc}" if str(exc) else name
    if isinstance(exc, ews_errors.UnauthorizedError):
        return base.AuthenticationFailed(
            f"Exchange refused the service account's credentials ({message}).", code=name
        )
    if isinstance(exc, ews_errors.ErrorNonExistentMailbox):
        return base.MailboxNotFound(f"Exchange has no such mailbox ({message}).", code=name)
    if isinstance(exc, ews_errors.ErrorImpersonateUserDenied | ews_errors.ErrorAccessDenied):
        return base.AccessDenied(
            f"The service account may not open this mailbox; check the impersonation or delegate rights ({message}).",
            code=name,
        )
    if isinstance(exc, ews_errors.ErrorInvalidSyncStateData):
        return base.InvalidSyncToken(message, code=name)
    if isinstance(exc, ews_errors.ErrorServerBusy):
        wait = (exc.back_off or 0) or None
        return base.Throttled(f"Exchange is busy ({message}).", retry_after=wait, code=name)
    if isinstance(exc, ews_errors.ErrorIrresolvableConflict):
        return base.StaleChangeKey(message, code=name)
    if isinstance(exc, _NOT_FOUND):
        return base.ItemNotFound(message, code=name)
    if isinstance(exc, _PERMANENT_ITEM_ERRORS) or name.startswith("ErrorPropertyValueTooLong"):
        return base.InvalidItem(message, code=name)
    if isinstance(exc, ValueError | TypeError):
        # exchangelib validates values before sending (e.g. a malformed address or URI).
        return base.InvalidItem(message, code=name)
    if isinstance(
        exc,
        ews_errors.RateLimitError
        | ews_errors.ErrorTimeoutExpired
        | ews_errors.TransportError
        | ews_errors.ErrorInternalServerTransientError
        | ews_errors.ErrorMailboxMoveInProgress
        | ews_errors.ErrorMailboxStoreUnavailable
        | ews_errors.ErrorExceededConnectionCount
        | ews_errors.ErrorTooManyObjectsOpened
        | ews_errors.CASError
        | requests.RequestException
        | ConnectionError
        | TimeoutError,
    ):
        return base.TransientMailboxError(f"Exchange is not answering normally ({message}).", code=name)
    if isinstance(exc, ews_errors.ResponseMessageError | ews_errors.EWSError):
        return base.TransientMailboxError(message, code=name)
    raise exc


def _item_result(value: Any, folder_id: str = "") -> ItemResult:
    if isinstance(value, Exception):
        return ItemResult(error=translate(value))
    if isinstance(value, tuple):
        item_id, change_key = value
    else:
        item_id, change_key = value.id, value.changekey
    return ItemResult(ref=RemoteRef(item_id, change_key or "", folder_id))


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


def _ews_fields(card_fields: Iterable[str]) -> list[str]:
    """exchangelib field names for card fields (indexed fields are written whole)."""
    names: list[str] = []
    for name in card_fields:
        if name in _PHONE_LABELS:
            target = "phone_numbers"
        elif name in _EMAIL_LABELS:
            target = "email_addresses"
        elif name == "business_address":
            target = "physical_addresses"
        else:
            target = _SIMPLE_FIELDS[name]
        if target not in names:
            names.append(target)
    return names


def _to_contact(card: ContactCard, account: Account, folder: Folder | None = None) -> Contact:
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
    if card.ref:
        contact.id, contact.changekey = card.ref.item_id, card.ref.change_key or None
    return contact


# --- Calendar ---------------------------------------------------------------------------------

if SYNC_ID_FIELD not in {f.name for f in CalendarItem.FIELDS}:
    CalendarItem.register(SYNC_ID_FIELD, SyncIdProperty)

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
    p = recurrence.parse_rrule(rrule, first)
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
    return Recurrence(pattern=pattern, boundary=boundary)


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


def _tz(name: str) -> EWSTimeZone:
    try:
        return EWSTimeZone(name or "UTC")
    except Exception as exc:  # exchangelib raises its own UnknownTimeZone
        raise base.InvalidItem(
            f"Unknown time zone “{name}”: the event is not written rather than shifted."
        ) from exc


def _to_calendar_item(event: CalendarEvent, account: Account, folder: Folder | None = None) -> CalendarItem:
    tz = _tz(event.time_zone)
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
    if event.ref:
        item.id, item.changekey = event.ref.item_id, event.ref.change_key or None
    return item


def _utc(value: datetime | None) -> datetime | None:
    """A plain aware UTC datetime (the engine never sees exchangelib's own classes)."""
    return None if value is None else datetime.fromtimestamp(value.timestamp(), UTC)


def _from_calendar_item(item: CalendarItem, folder_id: str) -> CalendarEvent:
    if item.start is not None and getattr(item, "_start_timezone", None) is None:
        # exchangelib could not map the item's Windows zone: its times would be read as UTC
        # and shift across DST, so the item is reported instead (K10).
        raise base.InvalidItem(
            f"“{item.subject or '(no subject)'}” uses a time zone this product does not know; "
            "it is not synchronized rather than shifted."
        )
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
        event.end_date = _all_day_end(event.start, item, zone)
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


def _all_day_end(start: datetime, item: CalendarItem, zone) -> date:
    """The (exclusive) end day of an all-day item. exchangelib turns the end into a date by taking
    24 hours off the end in UTC, which lands a day early when the last day is 23 hours long (the
    spring DST change): the start plus the item's Duration is exact."""
    match = _DURATION.match(item.duration or "")
    if not match:
        return _plain_date(item.end) + timedelta(days=1)
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    end = (start + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)).astimezone(zone)
    return end.date() if end.time() == datetime.min.time() else end.date() + timedelta(days=1)


def _exception_ids(item: CalendarItem) -> list[str]:
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


def _event_fieldnames(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        for field_name in _EVENT_FIELDS[name]:
            if field_name not in out:
                out.append(field_name)
    return out


class _EwsCalendar:
    """The calendar half of EwsBackend (mixed in below)."""

    def ensure_calendar_folder(self, mailbox: str) -> str:
        account = self.account(mailbox)
        return self._call(Calendar.get_distinguished, self._root(account)).id

    def calendar_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        return self.contact_changes(mailbox, folder_id, token)

    def calendar_slice(self, mailbox: str, folder_id: str, start: datetime, end: datetime) -> list[RemoteRef]:
        folder = self._folder(self.account(mailbox), folder_id)
        query = folder.filter(
            start__gte=EWSDateTime.from_datetime(start.astimezone(UTC)),
            start__lt=EWSDateTime.from_datetime(end.astimezone(UTC)),
        ).only("id", "changekey")
        query.page_size = FIND_PAGE
        return self._call(
            lambda: [
                RemoteRef(i.id, i.changekey or "", folder_id) for i in query if not isinstance(i, Exception)
            ]
        )

    def calendar_present(self, mailbox: str, folder_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        if not item_ids:
            return {}
        account = self.account(mailbox)
        items = self._call(
            lambda: list(
                account.fetch(
                    ids=[(i, None) for i in item_ids],
                    only_fields=["parent_folder_id", "changekey"],
                    chunk_size=self.config.batch_size,
                )
            )
        )
        present: dict[str, str] = {}
        for item_id, item in zip(item_ids, items, strict=True):
            if isinstance(item, Exception):
                error = translate(item)
                if isinstance(error, base.ItemNotFound):
                    continue
                raise error
            if item.parent_folder_id is not None and item.parent_folder_id.id == folder_id:
                present[item_id] = item.changekey or ""
        return present

    def get_events(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[CalendarEvent | MailboxError]:
        if not refs:
            return []
        account = self.account(mailbox)
        items = self._call(
            lambda: list(
                account.fetch(ids=[(r.item_id, None) for r in refs], chunk_size=self.config.batch_size)
            )
        )
        out: list[CalendarEvent | MailboxError] = []
        exceptions: list[tuple[base.Occurrence, str, CalendarEvent]] = []
        for ref, item in zip(refs, items, strict=True):
            if isinstance(item, Exception):
                out.append(translate(item))
                continue
            try:
                event = _from_calendar_item(item, ref.folder_id)
            except MailboxError as exc:
                out.append(exc)
                continue
            out.append(event)
            ids = _exception_ids(item)
            exceptions += [
                (occurrence, occurrence_id, event)
                for occurrence, occurrence_id in zip(event.modified_occurrences, ids, strict=False)
            ]
        if exceptions:
            self._read_exceptions(account, exceptions)
        return out

    def _read_exceptions(self, account: Account, exceptions: list[tuple[base.Occurrence, str, CalendarEvent]]) -> None:
        """Subject and location of modified occurrences, in one more request per batch (a master
        lists only their times)."""
        found = self._call(
            lambda: list(
                account.fetch(
                    ids=[(occurrence_id, None) for _, occurrence_id, _ in exceptions],
                    only_fields=["subject", "location"],
                    chunk_size=self.config.batch_size,
                )
            )
        )
        for (occurrence, _, event), item in zip(exceptions, found, strict=True):
            if isinstance(item, Exception):
                continue
            subject, location = (item.subject or "").strip(), (item.location or "").strip()
            occurrence.subject = subject if subject != event.subject.strip() else None
            occurrence.location = location if location != event.location.strip() else None

    def create_events(
        self, mailbox: str, folder_id: str, events: Sequence[CalendarEvent], *, send_invitations: bool
    ) -> list[ItemResult]:
        if not events:
            return []
        account = self.account(mailbox)
        folder = self._folder(account, folder_id)
        prepared: list[CalendarItem | MailboxError] = []
        for event in events:
            try:
                prepared.append(_to_calendar_item(event, account, folder))
            except MailboxError as exc:
                prepared.append(exc)
        valid = [p for p in prepared if not isinstance(p, MailboxError)]
        send = SEND_TO_ALL_AND_SAVE_COPY if send_invitations else SEND_TO_NONE
        results = iter(
            self._call(
                account.bulk_create,
                folder=folder,
                items=valid,
                send_meeting_invitations=send,
                chunk_size=self.config.batch_size,
            )
        )
        return [
            ItemResult(error=p) if isinstance(p, MailboxError) else _item_result(next(results), folder_id)
            for p in prepared
        ]

    def update_events(
        self,
        mailbox: str,
        updates: Sequence[tuple[RemoteRef, CalendarEvent, Iterable[str]]],
        *,
        send_updates: bool,
    ) -> list[ItemResult]:
        if not updates:
            return []
        account = self.account(mailbox)
        send = SEND_TO_ALL_AND_SAVE_COPY if send_updates else SEND_TO_NONE
        results: list[ItemResult | None] = [None] * len(updates)
        plain: list[tuple[int, RemoteRef, CalendarItem, list[str]]] = []
        for index, (ref, event, names) in enumerate(updates):
            names = set(names)
            try:
                item = _to_calendar_item(event, account)
                item.id, item.changekey = ref.item_id, ref.change_key or None
            except MailboxError as exc:
                results[index] = ItemResult(error=exc)
                continue
            if names & set(base.OCCURRENCE_FIELDS) and event.recurrence:
                results[index] = self._update_series(account, ref, event, item, names, send)
            else:
                plain.append((index, ref, item, _event_fieldnames(names - set(base.OCCURRENCE_FIELDS))))
        if plain:
            written = self._call(
                account.bulk_update,
                items=[(item, fieldnames) for _, _, item, fieldnames in plain],
                conflict_resolution="AlwaysOverwrite",
                send_meeting_invitations_or_cancellations=send,
                chunk_size=self.config.batch_size,
            )
            for (index, ref, _, _), result in zip(plain, written, strict=True):
                results[index] = _item_result(result, ref.folder_id)
        return [r if r is not None else ItemResult(error=base.InvalidItem("not written")) for r in results]

    def _update_series(
        self,
        account: Account,
        ref: RemoteRef,
        event: CalendarEvent,
        item: CalendarItem,
        names: set[str],
        send: str,
    ) -> ItemResult:
        """A series with occurrence writes (K10): the series' own fields first (a new pattern
        drops every exception), then the deleted occurrences, then the modified ones — each
        occurrence addressed by its InstanceIndex, which the pattern gives without a request."""
        series = base.Series(event.recurrence, event.start, event.time_zone)
        master_fields = _event_fieldnames(names - set(base.OCCURRENCE_FIELDS))
        change_key = ""
        try:
            if master_fields:
                (written,) = self._call(
                    account.bulk_update,
                    items=[(item, master_fields)],
                    conflict_resolution="AlwaysOverwrite",
                    send_meeting_invitations_or_cancellations=send,
                )
                result = _item_result(written, ref.folder_id)
                if not result.ok:
                    return result
                change_key = result.ref.change_key
            deletes = event.deleted_occurrences if "deleted_occurrences" in names else []
            if deletes:
                ids = [self._occurrence_id(ref, series, original) for original in deletes]
                for outcome in self._call(
                    account.bulk_delete,
                    ids=ids,
                    delete_type="MoveToDeletedItems",
                    send_meeting_cancellations=send,
                ):
                    if isinstance(outcome, Exception) and not isinstance(
                        outcome, ews_errors.ErrorCalendarOccurrenceIsDeletedFromRecurrence
                    ):
                        return ItemResult(error=translate(outcome))
                change_key = ""
            modified = event.modified_occurrences if "modified_occurrences" in names else []
            if modified:
                changes = [self._occurrence_change(account, ref, series, event, o) for o in modified]
                for outcome in self._call(
                    account.bulk_update,
                    items=changes,
                    conflict_resolution="AlwaysOverwrite",
                    send_meeting_invitations_or_cancellations=send,
                ):
                    if isinstance(outcome, Exception):
                        return ItemResult(error=translate(outcome))
                change_key = ""
        except MailboxError as exc:
            if isinstance(exc, base.ItemError):
                return ItemResult(error=exc)
            raise
        return ItemResult(ref=RemoteRef(ref.item_id, change_key, ref.folder_id))

    @staticmethod
    def _occurrence_id(ref: RemoteRef, series: base.Series, original: datetime) -> OccurrenceItemId:
        index = series.index_of(original)
        if index is None:
            raise base.InvalidItem(f"{original.isoformat()} is not an occurrence of the series")
        return OccurrenceItemId(id=ref.item_id, instance_index=index)

    def _occurrence_change(
        self,
        account: Account,
        ref: RemoteRef,
        series: base.Series,
        event: CalendarEvent,
        occurrence: base.Occurrence,
    ) -> tuple[CalendarItem, list[str]]:
        tz = _tz(event.time_zone)
        item = CalendarItem(account=account, _id=self._occurrence_id(ref, series, occurrence.original_start))
        item.start = EWSDateTime.from_datetime(occurrence.start).astimezone(tz)
        item.end = EWSDateTime.from_datetime(occurrence.end).astimezone(tz)
        item._start_timezone = item._end_timezone = tz
        item.subject = occurrence.subject if occurrence.subject is not None else event.subject or None
        item.location = occurrence.location if occurrence.location is not None else event.location or None
        return item, ["start", "end", "subject", "location"]

    def delete_events(
        self, mailbox: str, refs: Sequence[RemoteRef], *, send_cancellations: bool
    ) -> list[ItemResult]:
        if not refs:
            return []
        account = self.account(mailbox)
        results = self._call(
            account.bulk_delete,
            ids=[(r.item_id, None) for r in refs],
            delete_type="MoveToDeletedItems",
            send_meeting_cancellations=SEND_TO_ALL_AND_SAVE_COPY if send_cancellations else SEND_TO_NONE,
            chunk_size=self.config.batch_size,
        )
        out = []
        for ref, result in zip(refs, results, strict=True):
            error = translate(result) if isinstance(result, Exception) else None
            out.append(
                ItemResult(ref=ref)
                if error is None or isinstance(error, base.ItemNotFound)
                else ItemResult(error=error)
            )
        return out


# --- The backend ------------------------------------------------------------------------------


class EwsBackend(_EwsCalendar, MailboxBackend):
    def __init__(self, config: ConnectionConfig, *, own_pool: bool = False) -> None:
        """``own_pool``: connections of this backend's own, not shared with the rest of the process.

        exchangelib keeps one protocol (one pool of HTTP sessions) per endpoint and credentials for
        the whole process. A streaming connection blocks one of those sessions for minutes, so
        each push connection asks for a pool of its own.
        """
        self.config = config
        self._own_pool = own_pool
        self._own_protocols: dict[int, Protocol] = {}
        self._configuration = Configuration(
            service_endpoint=config.ews_url or None,
            server=None,
            credentials=self._credentials(config),
            auth_type=self._auth_type(config),
            version=Version(build=SERVER_BUILD),
            retry_policy=SyncRetryPolicy(max_wait=config.max_wait_s),
            max_connections=4,
        )
        self._accounts: dict[str, Account] = {}
        self._requests_at_start = requests_sent()

    @property
    def requests(self) -> int:  # type: ignore[override]
        return requests_sent() - self._requests_at_start

    @staticmethod
    def _auth_type(config: ConnectionConfig) -> str:
        return {"ntlm": NTLM, "basic": BASIC, "oauth2": OAUTH2}[config.auth_type]

    @staticmethod
    def _credentials(config: ConnectionConfig):
        if config.auth_type == "oauth2":
            return OAuth2Credentials(
                client_id=config.client_id, client_secret=config.client_secret, tenant_id=config.tenant_id
            )
        return Credentials(username=config.username, password=config.password)

    def account(self, mailbox: str) -> Account:
        key = mailbox.lower()
        if key not in self._accounts:
            if not self.config.ews_url:
                raise base.PermanentMailboxError(
                    "No EWS URL is configured (autodiscover is not used by this product)."
                )
            configuration = self._configuration
            if self.config.auth_type == "oauth2":
                # OAuth with impersonation names the mailbox in the token request's identity.
                configuration = Configuration(
                    service_endpoint=self.config.ews_url,
                    credentials=OAuth2Credentials(
                        client_id=self.config.client_id,
                        client_secret=self.config.client_secret,
                        tenant_id=self.config.tenant_id,
                        identity=Identity(primary_smtp_address=mailbox),
                    ),
                    auth_type=OAUTH2,
                    version=Version(build=SERVER_BUILD),
                    retry_policy=SyncRetryPolicy(max_wait=self.config.max_wait_s),
                    max_connections=4,
                )
            account = Account(
                primary_smtp_address=mailbox,
                config=configuration,
                autodiscover=False,
                access_type=IMPERSONATION if self.config.impersonation else DELEGATE,
                default_timezone=None,
            )
            if self._own_pool:
                account.protocol = self._own_protocol(configuration)
            self._accounts[key] = account
        return self._accounts[key]

    def _own_protocol(self, configuration: Configuration) -> Protocol:
        found = self._own_protocols.get(id(configuration))
        if found is None:
            # Calling the class through `type` skips exchangelib's process-wide protocol cache
            # (its metaclass); the protocol and its session pool belong to this backend alone.
            found = type.__call__(Protocol, config=configuration)
            self._own_protocols[id(configuration)] = found
        return found

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # translated into the one error family
            raise translate(exc) from exc

    # Folders -------------------------------------------------------------------------------

    def _root(self, account: Account) -> Root:
        # A root object without a GetFolder round trip: only its account is used.
        return Root(
            account=account,
            _distinguished_id=DistinguishedFolderId(
                id=Root.DISTINGUISHED_FOLDER_ID, mailbox=Mailbox(email_address=account.primary_smtp_address)
            ),
        )

    def _folder(self, account: Account, folder_id: str) -> Folder:
        return Folder(root=self._root(account), id=folder_id)

    def check(self, mailbox: str) -> list[str]:
        account = self.account(mailbox)
        tried = [
            f"EWS {self.config.ews_url} as {self.config.username or self.config.client_id} ({self.config.auth_type})"
        ]
        self._call(Contacts.get_distinguished, self._root(account))
        tried.append(f"opened the contacts folder of {mailbox}")
        return tried

    def ensure_contact_folder(self, mailbox: str, name: str) -> str:
        account = self.account(mailbox)
        contacts = self._call(Contacts.get_distinguished, self._root(account))
        if not name:
            return contacts.id
        found = self._call(self._find_child, contacts, name)
        if found:
            return found[0].id
        new = Folder(parent=contacts, name=name, folder_class="IPF.Contact")
        created = self._call(
            lambda: list(CreateFolder(account=account).call(parent_folder=contacts, folders=[new]))
        )
        result = created[0]
        if isinstance(result, Exception):
            raise translate(result)
        return result.id

    @staticmethod
    def _find_child(parent: Folder, name: str) -> list[Folder]:
        # FindFolder on the one parent: `parent / name` would walk the whole folder tree.
        collection = FolderCollection(account=parent.account, folders=[parent])
        return [
            f
            for f in collection.find_folders(q=Q(name=name), depth=SHALLOW)
            if not isinstance(f, Exception) and (f.name or "").lower() == name.lower()
        ]

    # Reading -------------------------------------------------------------------------------

    def contact_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        folder = self._folder(self.account(mailbox), folder_id)
        page = ChangePage()

        def consume() -> None:
            for change_type, item in folder.sync_items(
                sync_state=token or None, only_fields=[], max_changes_returned=SYNC_PAGE
            ):
                if change_type == "delete":
                    page.deleted.append(item.id)
                elif change_type in ("create", "update"):
                    page.changed.append(RemoteRef(item.id, item.changekey or "", folder_id))

        self._call(consume)
        page.token = folder.item_sync_state or ""
        return page

    def list_synced_items(self, mailbox: str, folder_id: str) -> dict[str, RemoteRef]:
        folder = self._folder(self.account(mailbox), folder_id)
        query = folder.all().only("id", "changekey", SYNC_ID_FIELD)
        query.page_size = FIND_PAGE
        found: dict[str, RemoteRef] = {}

        def consume() -> None:
            for item in query:
                if isinstance(item, Exception):
                    raise item
                sync_id = getattr(item, SYNC_ID_FIELD, None)
                if sync_id:
                    found.setdefault(sync_id, RemoteRef(item.id, item.changekey or "", folder_id))

        self._call(consume)
        return found

    def find_by_sync_ids(
        self, mailbox: str, folder_ids: Sequence[str], sync_ids: Sequence[str]
    ) -> dict[str, RemoteRef]:
        account = self.account(mailbox)
        found: dict[str, RemoteRef] = {}
        wanted = list(dict.fromkeys(sync_ids))
        for folder_id in dict.fromkeys(folder_ids):
            folder = self._folder(account, folder_id)
            for start in range(0, len(wanted), 50):
                chunk = [s for s in wanted[start : start + 50] if s not in found]
                if not chunk:
                    continue
                query = folder.filter(**{f"{SYNC_ID_FIELD}__in": chunk}).only(
                    "id", "changekey", SYNC_ID_FIELD
                )

                def consume(query=query, folder_id=folder_id) -> None:
                    for item in query:
                        if isinstance(item, Exception):
                            raise item
                        found.setdefault(
                            getattr(item, SYNC_ID_FIELD), RemoteRef(item.id, item.changekey or "", folder_id)
                        )

                self._call(consume)
        return found

    # Writing -------------------------------------------------------------------------------

    def create_contacts(self, mailbox: str, folder_id: str, cards: Sequence[ContactCard]) -> list[ItemResult]:
        if not cards:
            return []
        account = self.account(mailbox)
        folder = self._folder(account, folder_id)
        items: list[Contact | Exception] = []
        for card in cards:
            try:
                items.append(_to_contact(card, account, folder))
            except (ValueError, TypeError) as exc:
                items.append(exc)
        valid = [item for item in items if not isinstance(item, Exception)]
        results = iter(
            self._call(account.bulk_create, folder=folder, items=valid, chunk_size=self.config.batch_size)
        )
        return [
            ItemResult(error=translate(item))
            if isinstance(item, Exception)
            else _item_result(next(results), folder_id)
            for item in items
        ]

    def update_contacts(
        self, mailbox: str, updates: Sequence[tuple[RemoteRef, ContactCard, Iterable[str]]]
    ) -> list[ItemResult]:
        if not updates:
            return []
        account = self.account(mailbox)
        prepared: list[tuple[Contact, list[str]] | Exception] = []
        for ref, card, names in updates:
            try:
                contact = _to_contact(card, account)
                contact.id, contact.changekey = ref.item_id, ref.change_key or None
                fieldnames = _ews_fields(names)
                if card.sync_id:
                    fieldnames.append(SYNC_ID_FIELD)
                prepared.append((contact, fieldnames))
            except (ValueError, TypeError) as exc:
                prepared.append(exc)
        valid = [p for p in prepared if not isinstance(p, Exception)]
        # AlwaysOverwrite: the CRM is the source for contacts (C6), whatever Outlook did since.
        results = iter(
            self._call(
                account.bulk_update,
                items=valid,
                conflict_resolution="AlwaysOverwrite",
                chunk_size=self.config.batch_size,
            )
        )
        out = []
        for (ref, _, _), p in zip(updates, prepared, strict=True):
            out.append(
                ItemResult(error=translate(p))
                if isinstance(p, Exception)
                else _item_result(next(results), ref.folder_id)
            )
        return out

    def move_items(self, mailbox: str, refs: Sequence[RemoteRef], folder_id: str) -> list[ItemResult]:
        if not refs:
            return []
        account = self.account(mailbox)
        folder = self._folder(account, folder_id)
        results = self._call(
            account.bulk_move,
            ids=[(r.item_id, r.change_key or None) for r in refs],
            to_folder=folder,
            chunk_size=self.config.batch_size,
        )
        return [_item_result(r, folder_id) for r in results]

    def delete_items(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        return self.delete_events(mailbox, refs, send_cancellations=False)

    def close(self) -> None:
        for account in self._accounts.values():
            try:
                account.protocol.close()
            except Exception:  # closing is best effort
                log.debug("closing an EWS protocol failed", exc_info=True)
        self._accounts.clear()
        self._own_protocols.clear()


# --- Push: streaming notifications (K14; used by the push listener process only) ---------------

MAX_SUBSCRIPTIONS_PER_CONNECTION = 200  # Exchange's limit of subscription ids per GetStreamingEvents


def stream_calendar_changes(
    config: ConnectionConfig,
    mailboxes: Sequence[str],
    *,
    on_subscribed=None,
    should_stop=lambda: False,
    connection_timeout_minutes: int = 1,
):
    """Yield the address of each mailbox whose calendar changed, for as long as the stream lives.

    One streaming subscription per mailbox, all read over one connection of its own (at most 200,
    Exchange's limit), the way Microsoft describes keeping affinity for a group of subscriptions:
    the group's anchor is its alphabetically first mailbox; the anchor subscribes first and the
    X-BackEndOverrideCookie of that answer goes with every other subscription of the group and with
    the GetStreamingEvents request, which impersonates the anchor. So the group's subscriptions
    live on one Mailbox server and one request reads them all.

    ``on_subscribed`` is called once the subscriptions exist: streaming cannot replay what happened
    before, so the caller runs its catch-up then. Raises ``MailboxError`` when the stream breaks
    (a stream that ends without the server closing it counts as broken); the caller backs off and
    calls again (a new gap, a new catch-up).
    """
    from exchangelib.properties import StatusEvent
    from exchangelib.services import GetStreamingEvents

    if len(mailboxes) > MAX_SUBSCRIPTIONS_PER_CONNECTION:
        raise ValueError(f"at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions per connection")
    if not mailboxes:
        return
    backend = EwsBackend(config, own_pool=True)
    ordered = sorted(mailboxes, key=str.lower)
    anchor = backend.account(ordered[0])
    subscriptions: dict[str, str] = {}
    try:
        for mailbox in ordered:
            account = backend.account(mailbox)
            if account is not anchor:
                account.affinity_cookie = anchor.affinity_cookie
            subscriptions[backend._call(account.calendar.subscribe_to_streaming)] = mailbox
        if on_subscribed:
            on_subscribed()
        while not should_stop():
            reader = GetStreamingEvents(account=anchor)
            try:
                for notification in reader.call(list(subscriptions), connection_timeout_minutes):
                    if any(not isinstance(event, StatusEvent) for event in notification.events):
                        mailbox = subscriptions.get(notification.subscription_id)
                        if mailbox:
                            yield mailbox
                    if should_stop():
                        return
            finally:
                # Hang up now, not when the garbage collector gets to it: the server streams on
                # for as long as the connection is open.
                reader.stop_streaming()
            if reader.connection_status != GetStreamingEvents.CLOSED:
                raise base.TransientMailboxError(
                    "The streaming connection ended before the server closed it."
                )
    except MailboxError:
        raise
    except Exception as exc:
        raise translate(exc) from exc
    finally:
        for subscription_id, mailbox in subscriptions.items():
            try:
                backend.account(mailbox).calendar.unsubscribe(subscription_id)
            except Exception:  # the server drops unread subscriptions on its own
                log.debug("unsubscribing %s failed", mailbox, exc_info=True)
        backend.close()
