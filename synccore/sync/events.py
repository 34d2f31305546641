"""Calendar values both sides agree on: CRM activities and Exchange events → one normal form.

The normal form is what the three-way merge (K8) compares and what a link's snapshot keeps:
trimmed strings, times in UTC (dates for all-day events), the CRM comment as plain text taken
from between the body markers (K12), attendees as sorted lowercase addresses.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from synccore.mailbox.base import Attendee, CalendarEvent
from synccore.models import Activity, ActivityType

OPEN, CLOSE = "[/]", "[\\]"
# Fields a meeting's attendees see: a change to one of these sends a meeting update.
ATTENDEE_VISIBLE = {"subject", "comment", "location", "start", "end", "all_day", "attendees", "recurrence"}


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


def remote_comment(event: CalendarEvent) -> str:
    before, inside, _ = split_body(body_text(event.body))
    return inside if inside is not None else before


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def local_dates(activity: Activity) -> tuple[date, date]:
    zone = ZoneInfo(activity.time_zone or "UTC")
    return activity.start.astimezone(zone).date(), activity.end.astimezone(zone).date()


def normal_rrule(rule: str) -> str:
    parts = sorted(
        p for p in rule.upper().removeprefix("RRULE:").split(";") if p and not p.startswith("WKST=")
    )
    return ";".join(parts)


def activity_values(activity: Activity, attendees: list[str] | None, with_comment: bool) -> dict[str, Any]:
    values: dict[str, Any] = {
        "subject": activity.subject.strip(),
        "location": activity.location.strip(),
        "all_day": activity.all_day,
        "private": activity.private,
        "recurrence": normal_rrule(activity.recurrence),
    }
    if activity.all_day:
        start, end = local_dates(activity)
        values["start"], values["end"] = start.isoformat(), max(end, start + timedelta(days=1)).isoformat()
    else:
        values["start"], values["end"] = _utc(activity.start), _utc(activity.end)
    if with_comment:
        values["comment"] = body_text(activity.comment)
    if attendees is not None:
        values["attendees"] = attendees
    return values


def event_values(
    event: CalendarEvent, with_attendees: bool, with_comment: bool, organizer: str
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "subject": event.subject.strip(),
        "location": event.location.strip(),
        "all_day": event.is_all_day,
        "private": event.is_private,
        "recurrence": normal_rrule(event.recurrence),
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
    return values


def in_window(start: datetime, end: datetime, rrule: str, now: datetime, horizon_end: datetime) -> bool:
    """Present or future (K2) and within the horizon; a series counts while it still occurs."""
    if start >= horizon_end:
        return False
    if not rrule:
        return end > now
    duration = end - start
    try:
        rule = rrulestr(rrule, dtstart=start)
    except (ValueError, TypeError):
        return end > now
    return rule.after(now - duration, inc=True) is not None


def default_reminder(activity: Activity, sync_settings) -> int | None:
    if activity.reminder_minutes is not None:
        return activity.reminder_minutes
    if activity.type == ActivityType.CALL:
        return sync_settings.reminder_call_minutes
    return sync_settings.reminder_appointment_minutes


def event_from_activity(
    activity: Activity, *, attendees: list[Attendee], comment: str | None, body_now: str, reminder: int | None
) -> CalendarEvent:
    event = CalendarEvent(
        subject=activity.subject.strip(),
        location=activity.location.strip(),
        is_all_day=activity.all_day,
        time_zone=activity.time_zone or "UTC",
        is_private=activity.private,
        reminder_minutes=reminder,
        attendees=attendees,
        recurrence=activity.recurrence.strip(),
        start=activity.start,
        end=activity.end,
    )
    if activity.all_day:
        start, end = local_dates(activity)
        event.start_date, event.end_date = start, max(end, start + timedelta(days=1))
    event.body = compose_body(body_text(body_now), comment) if comment is not None else body_text(body_now)
    return event
