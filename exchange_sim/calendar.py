"""Calendar semantics: recurrence expansion, occurrences and exceptions, Windows time zones.

A recurring master keeps its pattern in ``Recurrence`` and, in hidden properties, its modified
occurrences (``_exceptions``: original start ISO -> overridden properties) and deleted occurrences
(``_deleted``: original start ISOs). Occurrences are not stored: they are expanded on demand in the
series' start time zone, so a 10:00 Berlin weekly meeting stays at 10:00 local across DST.
"""

from __future__ import annotations

import copy
import functools
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule

from exchange_sim.store import Item, Store, StoreError, plain, plain_copy

# Windows time zone id -> IANA, for the zones the product and demo use (CLDR windowsZones, territory 001).
WINDOWS_TO_IANA: dict[str, str] = {
    "UTC": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "GTB Standard Time": "Europe/Bucharest",
    "Turkey Standard Time": "Europe/Istanbul",
    "Russian Standard Time": "Europe/Moscow",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg",
    "Arabian Standard Time": "Asia/Dubai",
    "India Standard Time": "Asia/Calcutta",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles",
    "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Atlantic Standard Time": "America/Halifax",
    "E. South America Standard Time": "America/Sao_Paulo",
}
IANA_TO_WINDOWS: dict[str, str] = {v: k for k, v in WINDOWS_TO_IANA.items()}
IANA_TO_WINDOWS.update({"Etc/UTC": "UTC", "Europe/Kyiv": "FLE Standard Time", "Asia/Kolkata": "India Standard Time"})

WEEKDAYS = {"Monday": 0, "Tuesday": 1, "Wednesday": 2, "Thursday": 3, "Friday": 4, "Saturday": 5, "Sunday": 6}
MONTHS = {
    name: index
    for index, name in enumerate(
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"],
        start=1,
    )
}
WEEK_INDEX = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": -1}
SERIES_LIMIT = 1000  # occurrences expanded at most for a series without end (as far as a view reaches)


def windows_zone_for(iana: str) -> str:
    return IANA_TO_WINDOWS.get(iana, "UTC")


def zone_for(windows_id: str | None) -> ZoneInfo:
    """The IANA zone of a Windows id; an IANA id is accepted too, anything unknown is UTC."""
    if not windows_id:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(WINDOWS_TO_IANA.get(windows_id, windows_id))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def iso_key(when: datetime) -> str:
    utc = when.astimezone(UTC)
    if utc.year < 1000:  # strftime does not pad such a year, isoformat does: keep strftime's text
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    # isoformat is several times cheaper than strftime (a calendar view keys every occurrence), and
    # its first 19 characters are the date and time without a replace() of the fraction and the zone
    return utc.isoformat()[:19] + "Z"


def occurrence_id(master_id: str, original_start: datetime) -> str:
    return f"{master_id}.OC{iso_key(original_start)}"


_STAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


@functools.lru_cache(maxsize=1 << 16)
def split_occurrence_id(item_id: str) -> tuple[str, datetime] | None:
    # Cached: a calendarView delta round splits every id of its window, twice (the answer is immutable).
    master, sep, stamp = item_id.rpartition(".OC")
    if not sep:
        return None
    found = _STAMP.fullmatch(stamp)
    if found:  # the text iso_key writes, read without strptime (slow); anything else as strptime reads it
        try:
            return master, datetime(*map(int, found.groups()), tzinfo=UTC)
        except ValueError:
            pass
    try:
        return master, datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class Occurrence:
    index: int  # 1-based position in the pattern (deleted ones count)
    original_start: datetime
    start: datetime
    end: datetime
    overrides: dict[str, Any] | None  # the exception's properties, None for a plain occurrence
    deleted: bool


def _rule(master: Item, count_limit: int | None = None) -> rrule.rrule:
    recurrence = master.props["Recurrence"]
    pattern, rng = recurrence["pattern"], recurrence["range"]
    zone = zone_for(master.props.get("StartTimeZone"))
    local_start = master.props["Start"].astimezone(zone)
    first_day = date.fromisoformat(rng["StartDate"][:10]) if rng.get("StartDate") else local_start.date()
    dtstart = datetime.combine(first_day, local_start.time().replace(tzinfo=None))
    kind = pattern["type"]
    interval = int(pattern.get("Interval") or 1)
    kwargs: dict[str, Any] = {"dtstart": dtstart, "interval": interval}
    if kind == "DailyRecurrence":
        freq = rrule.DAILY
    elif kind == "WeeklyRecurrence":
        freq = rrule.WEEKLY
        kwargs["byweekday"] = [WEEKDAYS[d] for d in str(pattern.get("DaysOfWeek", "")).split() if d in WEEKDAYS]
        kwargs["wkst"] = WEEKDAYS.get(pattern.get("FirstDayOfWeek", "Monday"), 0)
    elif kind == "AbsoluteMonthlyRecurrence":
        freq = rrule.MONTHLY
        kwargs["bymonthday"] = int(pattern["DayOfMonth"])
    elif kind == "RelativeMonthlyRecurrence":
        freq = rrule.MONTHLY
        kwargs.update(_relative(pattern))
    elif kind == "AbsoluteYearlyRecurrence":
        freq = rrule.YEARLY
        kwargs.update(bymonth=MONTHS[pattern["Month"]], bymonthday=int(pattern["DayOfMonth"]), interval=1)
    elif kind == "RelativeYearlyRecurrence":
        freq = rrule.YEARLY
        kwargs.update(_relative(pattern), bymonth=MONTHS[pattern["Month"]], interval=1)
    else:
        raise StoreError("ErrorInvalidRecurrence", f"Unsupported recurrence pattern {kind}")
    if rng["type"] == "NumberedRecurrence":
        kwargs["count"] = int(rng["NumberOfOccurrences"])
    elif rng["type"] == "EndDateRecurrence":
        kwargs["until"] = datetime.combine(date.fromisoformat(rng["EndDate"][:10]), datetime.max.time())
    elif count_limit:
        kwargs["count"] = count_limit
    return rrule.rrule(freq, **kwargs)


def _relative(pattern: dict[str, Any]) -> dict[str, Any]:
    which = WEEK_INDEX[pattern.get("DayOfWeekIndex", "First")]
    days = str(pattern.get("DaysOfWeek", "Day"))
    if days == "Day":
        return {"bymonthday": which}
    if days in {"Weekday", "WeekendDay"}:
        chosen = [0, 1, 2, 3, 4] if days == "Weekday" else [5, 6]
        return {"byweekday": chosen, "bysetpos": which}
    return {"byweekday": rrule.weekday(WEEKDAYS[days], which)}


# Expanded series by what an expansion reads (see occurrences): a calendar view or delta round expands
# every series of the window, and the invitees' copies of a series expand as the organizer's does.
_EXPANDED: OrderedDict[tuple[Any, ...], tuple[Occurrence, ...]] = OrderedDict()
_EXPANDED_LOCK = threading.Lock()
_EXPANDED_LIMIT = 4096


def occurrences(master: Item, until: datetime | None = None) -> list[Occurrence]:
    """The series' occurrences in order, up to `until` (UTC) for a series without end."""
    props = master.props
    # Everything _expand reads; the instants only (an expansion reads no datetime's zone but through
    # StartTimeZone), the nested values by their text (which shows their datetimes' zones).
    key = (
        props["Start"],
        props["End"],
        props.get("StartTimeZone"),
        until,
        repr(props["Recurrence"]),
        repr(props.get("_exceptions")),
        repr(props.get("_deleted")),
    )
    with _EXPANDED_LOCK:
        found = _EXPANDED.get(key)
        if found is not None:
            _EXPANDED.move_to_end(key)
            return list(found)
    expanded = tuple(_expand(master, until))
    with _EXPANDED_LOCK:
        _EXPANDED[key] = expanded
        while len(_EXPANDED) > _EXPANDED_LIMIT:
            _EXPANDED.popitem(last=False)
    return list(expanded)


def _expand(master: Item, until: datetime | None) -> list[Occurrence]:
    zone = zone_for(master.props.get("StartTimeZone"))
    duration = master.props["End"] - master.props["Start"]
    exceptions: dict[str, dict[str, Any]] = master.props.get("_exceptions") or {}
    deleted = set(master.props.get("_deleted") or [])
    result: list[Occurrence] = []
    for index, naive in enumerate(_rule(master, SERIES_LIMIT), start=1):
        original = naive.replace(tzinfo=zone).astimezone(UTC)
        if until is not None and original > until:
            break
        key = iso_key(original)
        # a copy: the expansion is kept (occurrences) and must not follow later writes to the master
        override = plain_copy(exceptions[key]) if key in exceptions else None
        start = override.get("Start", original) if override else original
        end = override.get("End", original + duration) if override else original + duration
        result.append(Occurrence(index, original, start, end, override, key in deleted))
    return result


def occurrence_item(master: Item, occ: Occurrence) -> Item:
    """A transient Item for one occurrence, as EWS shows it (own id, master's UID, Type Occurrence/Exception)."""
    props = {k: plain_copy(v) for k, v in master.props.items() if k not in {"Recurrence", "_exceptions", "_deleted"}}
    props.update(plain_copy(occ.overrides or {}))
    for name in [k for k, v in props.items() if v is None]:
        del props[name]  # cleared on this occurrence only
    props["Start"], props["End"] = occ.start, occ.end
    props["_occurrence_of"] = master.id
    props["_original_start"] = occ.original_start
    props["_index"] = occ.index
    changekey = (occ.overrides or {}).get("_changekey", master.changekey)
    return Item(
        id=occurrence_id(master.id, occ.original_start),
        changekey=changekey,
        mailbox=master.mailbox,
        folder_id=master.folder_id,
        kind="CalendarItem",
        props=props,
        extended=plain_copy(master.extended),
        created=master.created,
        modified=master.modified,
        created_seq=master.created_seq,
    )


def expand_view(store: Store, folder_id: str, start: datetime, end: datetime) -> list[Item]:
    """Items overlapping [start, end): singles as they are, series as their occurrences/exceptions."""
    with store.lock:
        return [occurrence_item(item, occ) if occ else copy.deepcopy(item) for item, occ in view_entries(store, folder_id, start, end)]


def view_keys(store: Store, folder_id: str, start: datetime, end: datetime) -> dict[str, str]:
    """The ids and change keys of `expand_view`, in its order, without building its items (a
    calendarView delta round compares thousands of them)."""
    keys: dict[str, str] = {}
    with store.lock:
        for item, occ in view_entries(store, folder_id, start, end):
            if occ is None:
                keys[item.id] = item.changekey
            else:  # as occurrence_item names them
                keys[occurrence_id(item.id, occ.original_start)] = (occ.overrides or {}).get("_changekey", item.changekey)
    return keys


def view_entries(store: Store, folder_id: str, start: datetime, end: datetime) -> list[tuple[Item, Occurrence | None]]:
    """(live item, its occurrence or None for a single) overlapping [start, end), by start and subject;
    under the store lock, read-only. As Exchange does, an item that ends exactly where the window
    starts is in it (one that starts where the window ends is not)."""
    found: list[tuple[datetime, str, Item, Occurrence | None]] = []
    for item in store.live_items(folder_id, "CalendarItem"):
        props = item.props
        if props.get("Recurrence") and props.get("Start"):
            for occ in occurrences(item, until=end):
                if not occ.deleted and occ.start < end and occ.end >= start:
                    overrides = occ.overrides or {}
                    subject = overrides["Subject"] if "Subject" in overrides else props.get("Subject")
                    found.append((occ.start, subject or "", item, occ))
        elif props.get("Start") and props.get("End") and props["Start"] < end and props["End"] >= start:
            found.append((props["Start"], props.get("Subject") or "", item, None))
    found.sort(key=lambda entry: (entry[0], entry[1]))
    return [(item, occ) for _, _, item, occ in found]


def find_occurrence(store: Store, master_id: str, *, index: int | None = None, original: datetime | None = None) -> Item:
    master = store.item(master_id)
    if not master.props.get("Recurrence"):
        raise StoreError("ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange", "The item is not a recurring master.")
    until = original + timedelta(seconds=1) if original else None
    for occ in occurrences(master, until=until if index is None else None):
        if (index is not None and occ.index == index) or (original is not None and occ.original_start == original):
            if occ.deleted:
                raise StoreError("ErrorCalendarOccurrenceIsDeletedFromRecurrence", "The occurrence was deleted.")
            return occurrence_item(master, occ)
        if index is not None and occ.index > index:
            break
    raise StoreError(
        "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange", "The occurrence index is out of the recurrence range."
    )


def modify_occurrence(store: Store, occurrence: Item, changes: dict[str, Any], context: dict[str, Any] | None = None) -> Item:
    """Turn an occurrence into an exception (or change an exception); the master's change key moves too."""
    master_id = occurrence.props["_occurrence_of"]
    key = iso_key(occurrence.props["_original_start"])
    changes = plain(changes)

    def apply(master: Item) -> None:
        exceptions = dict(master.props.get("_exceptions") or {})
        override = dict(exceptions.get(key) or {})
        override.update({k: v for k, v in changes.items() if k not in {"Recurrence", "UID"}})
        override["_changekey"] = store.new_changekey()
        exceptions[key] = override
        master.props["_exceptions"] = exceptions

    store.update_item(master_id, merge=apply, context={**(context or {}), "occurrence": key})
    return find_occurrence(store, master_id, original=occurrence.props["_original_start"])


def delete_occurrence(store: Store, occurrence: Item, context: dict[str, Any] | None = None) -> None:
    master_id = occurrence.props["_occurrence_of"]
    key = iso_key(occurrence.props["_original_start"])

    def apply(master: Item) -> None:
        master.props["_deleted"] = sorted({*(master.props.get("_deleted") or []), key})
        exceptions = dict(master.props.get("_exceptions") or {})
        exceptions.pop(key, None)
        master.props["_exceptions"] = exceptions

    store.update_item(master_id, merge=apply, context={**(context or {}), "occurrence": key})


# ---- store hooks -------------------------------------------------------------------------------------
def complete_calendar_defaults(store: Store, item: Item) -> None:
    if item.kind != "CalendarItem":
        return
    props = item.props
    props.setdefault("UID", "040000008200E00074C5B7101A82E008" + uuid.uuid4().hex.upper())
    props.setdefault("LegacyFreeBusyStatus", "Busy")
    props.setdefault("IsAllDayEvent", False)
    props.setdefault("Sensitivity", "Normal")
    if not props.get("Organizer"):
        owner = store.live_mailbox(item.mailbox)
        props["Organizer"] = {"Name": owner.display_name, "EmailAddress": owner.address, "RoutingType": "SMTP", "MailboxType": "Mailbox"}
    if props.get("Start") and not props.get("StartTimeZone"):
        props["StartTimeZone"] = windows_zone_for(store.live_mailbox(item.mailbox).time_zone)
    if props.get("End") and not props.get("EndTimeZone"):
        props["EndTimeZone"] = props.get("StartTimeZone")
    if props.get("IsAllDayEvent") and props.get("Start") and props.get("End"):
        _snap_all_day(props)


def _snap_all_day(props: dict[str, Any]) -> None:
    """Exchange pushes all-day starts back and ends forward to local midnight."""
    zone = zone_for(props.get("StartTimeZone"))
    start = props["Start"].astimezone(zone)
    end = props["End"].astimezone(zone)
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    end_midnight = end.replace(hour=0, minute=0, second=0, microsecond=0)
    if end_midnight < end:
        end_midnight += timedelta(days=1)
    end_midnight = max(end_midnight, midnight + timedelta(days=1))
    props["Start"] = midnight.astimezone(UTC)
    props["End"] = end_midnight.astimezone(UTC)


def reset_exceptions_on_pattern_change(before: Item, item: Item, context: dict[str, Any]) -> None:
    """Like Exchange, changing a series' pattern or its time drops its modified and deleted occurrences,
    and so does writing its Recurrence again (Exchange rebuilds the pattern whenever it is set; that is
    how a client brings a deleted occurrence back)."""
    if item.kind != "CalendarItem" or context.get("occurrence") or not item.props.get("Recurrence"):
        return
    changed = any(before.props.get(k) != item.props.get(k) for k in ("Recurrence", "Start", "End", "StartTimeZone"))
    changed = changed or "Recurrence" in context.get("written", ())
    if changed:
        item.props.pop("_exceptions", None)
        item.props.pop("_deleted", None)


def computed_calendar(store: Store, item: Item) -> dict[str, Any]:
    """Values Exchange computes for a calendar item (type, first/last/modified/deleted occurrences...)."""
    props = item.props
    values: dict[str, Any] = {}
    if props.get("_occurrence_of"):
        # only exceptions carry their own change key
        values["CalendarItemType"] = "Exception" if props.get("_changekey") else "Occurrence"
        values["IsRecurring"] = True
        values["OriginalStart"] = props["_original_start"]
        values["RecurrenceId"] = props["_original_start"]
    elif props.get("Recurrence"):
        values["CalendarItemType"] = "RecurringMaster"
        values["IsRecurring"] = False  # Exchange: true on occurrences and exceptions only, not on the master
        values["Recurrence"] = _recurrence_with_offsets(item)
        values.update(_series_info(item))
    else:
        values["CalendarItemType"] = "Single"
        values["IsRecurring"] = False
    values["IsMeeting"] = bool(props.get("IsMeeting") or props.get("RequiredAttendees") or props.get("OptionalAttendees"))
    values["MyResponseType"] = props.get("MyResponseType") or "Organizer"
    if props.get("ReminderDueBy"):
        values["ReminderDueBy"] = props["ReminderDueBy"]  # as the client set it
    elif props.get("Start") and props.get("ReminderIsSet", True):
        values["ReminderDueBy"] = props["Start"] - timedelta(minutes=int(props.get("ReminderMinutesBeforeStart") or 15))
    if props.get("Start") and props.get("End"):
        values["Duration"] = _iso_duration(props["End"] - props["Start"])
    values["DateTimeStamp"] = item.modified
    values["IsOrganizer"] = values["MyResponseType"] == "Organizer"
    return values


def _recurrence_with_offsets(master: Item) -> dict[str, Any]:
    """The pattern as Exchange writes it: the range's StartDate / EndDate as xs:date with the UTC
    offset of the series' time zone on that day ("2016-01-01+01:00", "2016-01-01Z")."""
    recurrence = copy.deepcopy(master.props["Recurrence"])
    zone = zone_for(master.props.get("StartTimeZone"))
    rng = recurrence["range"]
    for part in ("StartDate", "EndDate"):
        if rng.get(part):
            day = date.fromisoformat(str(rng[part])[:10])
            offset = datetime.combine(day, datetime.min.time(), zone).utcoffset() or timedelta(0)
            rng[part] = day.isoformat() + _offset_text(offset)
    return recurrence


def _offset_text(offset: timedelta) -> str:
    if not offset:
        return "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def _series_info(master: Item) -> dict[str, Any]:
    from exchange_sim.ews.xmlutil import format_datetime

    occs = occurrences(master)
    live = [o for o in occs if not o.deleted]
    info: dict[str, Any] = {}

    def occurrence_xml(tag: str, occ: Occurrence) -> str:
        return (
            f'<t:{tag} xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
            f'<t:ItemId Id="{occurrence_id(master.id, occ.original_start)}" ChangeKey="{master.changekey}"/>'
            f"<t:Start>{format_datetime(occ.start)}</t:Start><t:End>{format_datetime(occ.end)}</t:End>"
            f"<t:OriginalStart>{format_datetime(occ.original_start)}</t:OriginalStart></t:{tag}>"
        )

    if live:
        info["FirstOccurrence"] = {"$xml": occurrence_xml("FirstOccurrence", live[0])}
        if master.props["Recurrence"]["range"]["type"] != "NoEndRecurrence":
            info["LastOccurrence"] = {"$xml": occurrence_xml("LastOccurrence", live[-1])}
    modified = [o for o in occs if o.overrides and not o.deleted]
    if modified:
        inner = "".join(occurrence_xml("Occurrence", o) for o in modified)
        info["ModifiedOccurrences"] = {
            "$xml": f'<t:ModifiedOccurrences xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">{inner}</t:ModifiedOccurrences>'
        }
    deleted = [o for o in occs if o.deleted]
    if deleted:
        inner = "".join(
            f"<t:DeletedOccurrence><t:Start>{format_datetime(o.original_start)}</t:Start></t:DeletedOccurrence>" for o in deleted
        )
        info["DeletedOccurrences"] = {
            "$xml": f'<t:DeletedOccurrences xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">{inner}</t:DeletedOccurrences>'
        }
    return info


def _iso_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time_part = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if v)
    if not days and not time_part:
        return "PT0S"
    return "P" + (f"{days}D" if days else "") + (f"T{time_part}" if time_part else "")


def install(simulator: Any) -> None:
    from exchange_sim.ews import calendar_ops

    store: Store = simulator.store
    store.add_hook("complete_defaults", lambda item: complete_calendar_defaults(store, item))
    store.add_hook("after_update", reset_exceptions_on_pattern_change)
    calendar_ops.install(simulator)
