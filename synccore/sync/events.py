"""Calendar values both sides agree on: CRM activities and Exchange events → one normal form.

The normal form is what the three-way merge (K8) compares and what a link's snapshot keeps:
trimmed strings, times in UTC (dates for all-day events), the CRM comment as plain text taken
from between the body markers (K12), attendees as sorted lowercase addresses.
"""

from __future__ import annotations

import contextlib
import functools
import html
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from synccore.mailbox import recurrence
from synccore.mailbox.base import Attendee, CalendarEvent, InvalidItem, Series, until_date
from synccore.models import Activity, ActivityType

OPEN, CLOSE = "[/]", "[\\]"
# Fields a meeting's attendees see: a change to one of these sends a meeting update.
ATTENDEE_VISIBLE = {
    "subject",
    "comment",
    "location",
    "start",
    "end",
    "all_day",
    "attendees",
    "recurrence",
    "occurrences",
}


class _Text(HTMLParser):
    BREAKS = {"br", "p", "div", "li", "tr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip += 1
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag in ("p", "div"):
            self.parts.append("\n")

    def handle_data(self, data) -> None:
        if not self.skip:
            self.parts.append(data)


# Pure functions of text that every pass computes again for every item (the normal forms of both
# sides): cached across passes.
CACHED = 4096


@functools.lru_cache(maxsize=CACHED)
def body_text(body: str) -> str:
    """A body as plain text: Exchange turns text bodies into HTML, so compare text only."""
    if "<" in body and ">" in body:
        parser = _Text()
        parser.feed(body)
        body = "".join(parser.parts)
    else:
        body = html.unescape(body)
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in body.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def split_body(text: str) -> tuple[str, str | None, str]:
    """(text before the markers, the CRM comment or None without markers, text after)."""
    start = text.find(OPEN)
    end = text.find(CLOSE, start + len(OPEN)) if start >= 0 else -1
    if start < 0 or end < 0:
        return text, None, ""
    return text[:start].strip(), text[start + len(OPEN) : end].strip(), text[end + len(CLOSE) :].strip()


def compose_body(current_text: str, comment: str) -> str:
    """Put the CRM comment between the markers, keeping what Outlook wrote outside them (K12)."""
    before, inside, after = split_body(current_text)
    if inside is None:
        before, after = "", ""  # no markers: the whole body was the comment (imported events)
    parts = [p for p in (before, f"{OPEN}{comment}{CLOSE}", after) if p]
    return "\n\n".join(parts)


def strip_comment(current_text: str) -> str:
    """The body without the CRM comment: for a meeting that now has attendees outside the
    organisation (K12). Text without markers is Outlook's own and stays."""
    before, inside, after = split_body(current_text)
    if inside is None:
        return current_text
    return "\n\n".join(p for p in (before, after) if p)


def remote_comment(event: CalendarEvent) -> str:
    before, inside, _ = split_body(body_text(event.body))
    return inside if inside is not None else before


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def moment(value: str) -> datetime:
    """An ISO 8601 value of the normal form (or of the CRM's lists) as an aware datetime; a date
    is its midnight UTC, a naive value is UTC."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def local_dates(activity: Activity) -> tuple[date, date]:
    zone = ZoneInfo(activity.time_zone or "UTC")
    return activity.start.astimezone(zone).date(), activity.end.astimezone(zone).date()


def normal_rrule(rule: str) -> str:
    parts = sorted(
        p for p in rule.upper().removeprefix("RRULE:").split(";") if p and not p.startswith("WKST=")
    )
    return ";".join(parts)


@functools.lru_cache(maxsize=CACHED)
def canonical_rrule(rule: str, start: datetime, time_zone: str) -> str:
    """One spelling per pattern: what the first start implies is written out (a weekly rule's
    day, a monthly rule's day of the month), INTERVAL=1 and WKST dropped, UNTIL as the local day
    Exchange ends the series on, "every weekday" as the weekly pattern Exchange makes of it. Both
    backends read a series back in this spelling (``mailbox.recurrence``)."""
    if not rule.strip():
        return ""
    parts = dict(p.split("=", 1) for p in rule.upper().removeprefix("RRULE:").split(";") if "=" in p)
    try:
        local = start.astimezone(ZoneInfo(time_zone or "UTC"))
    except (ValueError, KeyError):
        local = start.astimezone(UTC)
    if "UNTIL" in parts:
        with contextlib.suppress(ValueError, KeyError):
            parts["UNTIL"] = f"{until_date(parts['UNTIL'], time_zone):%Y%m%d}"
    spelled = ";".join(f"{k}={v}" for k, v in parts.items())
    try:
        return recurrence.to_rrule(recurrence.parse_rrule(spelled, local.date()))
    except recurrence.Unrepresentable:
        return normal_rrule(spelled)  # refused when written; compared as given


# --- Occurrences of a series (K10) ---------------------------------------------------------------
#
# The normal form keeps a series' exceptions as one field, "occurrences": original start (UTC ISO)
# → "deleted", or [start, end, subject, location] of a modified occurrence (subject / location
# None: as the series). An exception that equals its regular occurrence is not one. Occurrences
# that are over are compared by no one (K2): ``future`` drops them before any comparison.

DELETED = "deleted"


def _exception_value(
    start: datetime, end: datetime, subject: str | None, location: str | None, series: dict[str, Any]
) -> list[Any]:
    subject = (subject or "").strip() or None
    location = (location or "").strip() or None
    return [
        _utc(start),
        _utc(end),
        None if subject == series["subject"] else subject,
        None if location == series["location"] else location,
    ]


def _is_regular(key: str, value: list[Any], duration: timedelta) -> bool:
    original = moment(key)
    return (
        moment(value[0]) == original
        and moment(value[1]) == original + duration
        and value[2] is None
        and value[3] is None
    )


def _valid_keys(recurrence: str, start: datetime, time_zone: str, keys: set[datetime]) -> set[datetime]:
    """The original starts that are occurrences of the pattern (others are stale: dropped)."""
    if not keys:
        return set()
    try:
        series = Series(recurrence, start, time_zone)
        last = max(keys)
        found = set()
        for original in series.starts():
            if original > last:
                break
            if original in keys:
                found.add(original)
        return found
    except (ValueError, TypeError, KeyError):
        return set()


def activity_occurrences(activity: Activity, shape: Shape, series: dict[str, Any]) -> dict[str, Any]:
    duration = shape.end - shape.start
    deleted: dict[datetime, Any] = {}
    for raw in activity.recurrence_exdates or []:
        try:
            deleted[moment(raw)] = DELETED
        except (TypeError, ValueError):
            continue
    modified: dict[datetime, Any] = {}
    for raw in activity.recurrence_exceptions or []:
        try:
            original = moment(raw["original_start"])
            start = moment(raw["start"]) if raw.get("start") else original
            end = moment(raw["end"]) if raw.get("end") else start + duration
        except (TypeError, ValueError, KeyError):
            continue
        modified[original] = _exception_value(start, end, raw.get("subject"), raw.get("location"), series)
    wanted = {k for k in (*deleted, *modified) if k >= shape.start}
    valid = _valid_keys(shape.recurrence, shape.start, activity.time_zone, wanted)
    out: dict[str, Any] = {}
    for original in sorted(valid):
        key = _utc(original)
        if original in deleted:
            out[key] = DELETED
        elif not _is_regular(key, modified[original], duration):
            out[key] = modified[original]
    return out


def event_occurrences(event: CalendarEvent, series: dict[str, Any]) -> dict[str, Any]:
    duration = event.end - event.start
    out: dict[str, Any] = {_utc(d): DELETED for d in event.deleted_occurrences}
    for occurrence in event.modified_occurrences:
        key = _utc(occurrence.original_start)
        if key in out:
            continue
        value = _exception_value(
            occurrence.start, occurrence.end, occurrence.subject, occurrence.location, series
        )
        if not _is_regular(key, value, duration):
            out[key] = value
    return dict(sorted(out.items()))


def duration_of(values: dict[str, Any]) -> timedelta:
    return moment(values["end"]) - moment(values["start"])


def is_over(key: str, value: Any, now: datetime, duration: timedelta) -> bool:
    """An occurrence whose regular slot and (when moved) its new slot have both ended."""
    if moment(key) + duration > now:
        return False
    return value == DELETED or value is None or moment(value[1]) <= now


def future(occurrences: dict[str, Any] | None, now: datetime, duration: timedelta) -> dict[str, Any]:
    return {k: v for k, v in (occurrences or {}).items() if not is_over(k, v, now, duration)}


def crm_lists(occurrences: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The CRM's two lists (removed occurrences, modified occurrences) for a normal-form map."""
    exdates = [k for k, v in occurrences.items() if v == DELETED]
    exceptions = []
    for key, value in occurrences.items():
        if value == DELETED:
            continue
        entry: dict[str, Any] = {"original_start": key, "start": value[0], "end": value[1]}
        if value[2] is not None:
            entry["subject"] = value[2]
        if value[3] is not None:
            entry["location"] = value[3]
        exceptions.append(entry)
    return exdates, exceptions


# --- The shape of an activity as Exchange holds it ------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """Start, end and pattern of what the linked Exchange item holds of an activity: the whole
    activity, or — after a series that began in the past was changed (K15) — the part of the
    series from ``series_from`` on."""

    start: datetime
    end: datetime
    recurrence: str


def shape_of(activity: Activity, series_from: datetime | None = None) -> Shape:
    rule = activity.recurrence.strip()
    if not rule or series_from is None or series_from <= activity.start:
        return Shape(activity.start, activity.end, rule)
    series = Series(rule, activity.start, activity.time_zone)
    skipped = 0
    first = None
    for original in series.starts():
        if original >= series_from:
            first = original
            break
        skipped += 1
    if first is None:
        return Shape(activity.start, activity.end, rule)
    parts = dict(p.split("=", 1) for p in canonical_rrule(rule, activity.start, activity.time_zone).split(";"))
    if "COUNT" in parts:
        parts["COUNT"] = str(max(1, int(parts["COUNT"]) - skipped))
    remainder = ";".join(f"{k}={v}" for k, v in sorted(parts.items()))
    return Shape(first, first + (activity.end - activity.start), remainder)


def activity_values(
    activity: Activity,
    attendees: list[str] | None,
    with_comment: bool,
    series_from: datetime | None = None,
) -> dict[str, Any]:
    """The normal form of an activity. Raises InvalidItem when its time zone is unknown."""
    shape = shape_of_checked(activity, series_from)
    values: dict[str, Any] = {
        "subject": activity.subject.strip(),
        "location": activity.location.strip(),
        "all_day": activity.all_day,
        "private": activity.private,
        "recurrence": canonical_rrule(shape.recurrence, shape.start, activity.time_zone),
    }
    if activity.all_day:
        start, end = local_dates(activity)
        if shape.start != activity.start:
            zone = ZoneInfo(activity.time_zone or "UTC")
            start = shape.start.astimezone(zone).date()
            end = start + (end - local_dates(activity)[0])
        values["start"], values["end"] = start.isoformat(), max(end, start + timedelta(days=1)).isoformat()
    else:
        values["start"], values["end"] = _utc(shape.start), _utc(shape.end)
    if with_comment:
        values["comment"] = body_text(activity.comment)
    if attendees is not None:
        values["attendees"] = attendees
    if values["recurrence"]:
        values["occurrences"] = activity_occurrences(activity, shape, values)
    return values


def shape_of_checked(activity: Activity, series_from: datetime | None = None) -> Shape:
    try:
        ZoneInfo(activity.time_zone or "UTC")
        return shape_of(activity, series_from)
    except (ZoneInfoNotFoundError, ValueError, KeyError) as exc:
        raise InvalidItem(
            f"Unknown time zone “{activity.time_zone}”: the event is not written rather than shifted."
        ) from exc


def event_values(
    event: CalendarEvent, with_attendees: bool, with_comment: bool, organizer: str
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "subject": event.subject.strip(),
        "location": event.location.strip(),
        "all_day": event.is_all_day,
        "private": event.is_private,
        "recurrence": canonical_rrule(event.recurrence, event.start, event.time_zone),
    }
    if event.is_all_day and event.start_date:
        values["start"], values["end"] = event.start_date.isoformat(), event.end_date.isoformat()
    else:
        values["start"], values["end"] = _utc(event.start), _utc(event.end)
    if with_comment:
        values["comment"] = remote_comment(event)
    if with_attendees:
        values["attendees"] = sorted(
            {a.email.lower() for a in event.attendees if a.email.lower() != organizer}
        )
    if values["recurrence"]:
        values["occurrences"] = event_occurrences(event, values)
    return values


def in_window(
    start: datetime,
    end: datetime,
    rrule: str,
    now: datetime,
    horizon_end: datetime,
    time_zone: str = "UTC",
) -> bool:
    """Present or future (K2) and within the horizon; a series counts while it still occurs. A
    series Exchange cannot represent (e.g. COUNT=0) counts too: its write is tried and refused as
    an item error people see in "Needs attention" (DESIGN §5), never silently left out."""
    if start >= horizon_end:
        return False
    if not rrule:
        return end > now
    if unrepresentable(rrule, start, time_zone):
        return True
    try:
        nxt = next(Series(rrule, start, time_zone).starts(after=now - (end - start)), None)
    except (ValueError, TypeError, KeyError, ZoneInfoNotFoundError):
        return end > now
    return nxt is not None and nxt + (end - start) > now


@functools.lru_cache(maxsize=CACHED)
def unrepresentable(rrule: str, start: datetime, time_zone: str = "UTC") -> bool:
    """Whether no backend can write this series (``mailbox.recurrence`` and its limits)."""
    try:
        first = start.astimezone(ZoneInfo(time_zone or "UTC")).date()
    except (ValueError, KeyError):
        first = start.astimezone(UTC).date()
    try:
        recurrence.parse_rrule(rrule, first)
    except recurrence.Unrepresentable:
        return True
    return False


def default_reminder(activity: Activity, sync_settings) -> int | None:
    if activity.reminder_minutes is not None:
        return activity.reminder_minutes
    if activity.type == ActivityType.CALL:
        return sync_settings.reminder_call_minutes
    return sync_settings.reminder_appointment_minutes


def event_from_activity(
    activity: Activity,
    *,
    attendees: list[Attendee],
    comment: str | None,
    body_now: str,
    reminder: int | None,
    series_from: datetime | None = None,
) -> CalendarEvent:
    """The event an activity is written as (the part of its series from ``series_from`` on, K15).
    Its occurrence lists are left empty: the engine fills them with what it writes."""
    shape = shape_of_checked(activity, series_from)
    time_zone = activity.time_zone or "UTC"
    event = CalendarEvent(
        subject=activity.subject.strip(),
        location=activity.location.strip(),
        is_all_day=activity.all_day,
        time_zone=time_zone,
        is_private=activity.private,
        reminder_minutes=reminder,
        attendees=attendees,
        recurrence=canonical_rrule(shape.recurrence, shape.start, time_zone),
        start=shape.start,
        end=shape.end,
    )
    if activity.all_day:
        start, end = local_dates(activity)
        days = max((end - start).days, 1)
        event.start_date = shape.start.astimezone(ZoneInfo(time_zone)).date()
        event.end_date = event.start_date + timedelta(days=days)
    event.body = compose_body(body_text(body_now), comment) if comment is not None else body_text(body_now)
    return event


def content_key(values: dict[str, Any]) -> tuple:
    """What tells a personal appointment apart when nothing of ours is written in it (H2)."""
    return (values.get("subject", ""), values.get("start"), values.get("end"), values.get("all_day", False))
