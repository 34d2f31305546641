"""Calendar events ⇄ the Domino REST API's JSCalendar ``jsevent`` JSON, and the change token.

An entry is known by its ``uid`` (the id of ``/calendar/{calid}/{calentryid}``) and versioned by
``updated`` (the change key). The sync id rides in ``AdditionalFields.CrmSyncId``. Times: ``start``
is a local date-time in ``timeZone`` (IANA), ``duration`` an ISO 8601 duration; an all-day entry
has ``showWithoutTime`` and whole days. A series is one entry: its rule in ``recurrenceRules``, its
changed and removed occurrences in ``recurrenceOverrides``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from synccore.mailbox import base, recurrence
from synccore.mailbox.base import Attendee, CalendarEvent, RemoteRef

SYNC_ID_FIELD = "CrmSyncId"
_DURATION = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_RESPONSES = {
    "accepted": "Accept",
    "declined": "Decline",
    "tentative": "Tentative",
    "needs-action": "NoResponseReceived",
}
# Engine field → the JSCalendar properties that carry it.
_PROPERTIES: dict[str, tuple[str, ...]] = {
    "subject": ("title",),
    "body": ("description", "descriptionContentType"),
    "location": ("locations",),
    "start": ("start", "duration", "timeZone", "showWithoutTime"),
    "end": ("start", "duration", "timeZone", "showWithoutTime"),
    "is_all_day": ("start", "duration", "timeZone", "showWithoutTime"),
    "time_zone": ("start", "duration", "timeZone", "showWithoutTime"),
    "is_private": ("privacy",),
    "reminder_minutes": ("alerts",),
    "attendees": ("participants",),
    "recurrence": ("recurrenceRules",),
}
# The engine's occurrence writes and the series fields whose writing drops the exceptions (K10).
OVERRIDE_FIELDS = {*base.OCCURRENCE_FIELDS, *base.PATTERN_FIELDS}


# --- The change token ---------------------------------------------------------------------------


@dataclass
class CalendarToken:
    """What the last listing saw: each entry's ``updated`` stamp and start day (entries of the
    window, and those known before that now lie beyond it), and where the window ended."""

    stamps: dict[str, str] = field(default_factory=dict)
    window_end: str = ""
    days: dict[str, str] = field(default_factory=dict)

    def dump(self) -> str:
        data = {"s": self.stamps, "w": self.window_end, "d": self.days}
        return "domino:" + json.dumps(data, separators=(",", ":"))

    def last_day(self) -> date | None:
        """The latest start day of a known entry (the listing reaches at least that far)."""
        days = [date.fromisoformat(d) for d in self.days.values() if d]
        return max(days) if days else None

    @classmethod
    def load(cls, token: str) -> CalendarToken | None:
        """None for '' (from the start); InvalidSyncToken for another backend's token."""
        if not token:
            return None
        if not token.startswith("domino:"):
            raise base.InvalidSyncToken("The calendar token is not a Domino one.", code="ForeignToken")
        try:
            data = json.loads(token[7:])
            return cls(dict(data["s"]), str(data.get("w") or ""), dict(data.get("d") or {}))
        except (ValueError, KeyError, TypeError) as exc:
            raise base.InvalidSyncToken(f"The Domino calendar token cannot be read ({exc}).") from exc


# --- Reading --------------------------------------------------------------------------------------


def parse_duration(text: Any) -> timedelta:
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def duration_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = "P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "")
    text += f"T{clock}" if clock else ""
    return text if text != "P" else "PT0S"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise base.InvalidItem(f"unknown time zone {name!r}", code="UnknownZone") from exc


def start_day(entry: dict[str, Any]) -> str:
    """The local day an entry starts (its ``start``'s date), '' when unreadable."""
    text = str(entry.get("start") or "")[:10]
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        return ""


def ref_of(entry: dict[str, Any], folder_id: str) -> RemoteRef:
    return RemoteRef(str(entry["uid"]), str(entry.get("updated") or ""), folder_id)


def parse_utc(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def event_from_entry(entry: dict[str, Any], mailbox: str, folder_id: str) -> CalendarEvent:
    """A JSCalendar entry as the engine's event; InvalidItem for one it cannot read."""
    title = entry.get("title") or "(no subject)"
    if len(entry.get("recurrenceRules") or []) > 1:
        raise base.InvalidItem(
            f"“{title}” is a repeating Notes entry with several rules: those are not synchronized over "
            "Domino (docs/domino.md).",
            code="RecurrenceNotSupported",
        )
    zone_name = str(entry.get("timeZone") or "UTC")
    try:
        zone = _zone(zone_name)
    except base.InvalidItem as exc:
        # Its times would shift across DST (and its dates could move): reported instead (K10).
        raise base.InvalidItem(
            f"“{title}” uses a time zone this product does not know ({zone_name}); it is not synchronized "
            "rather than shifted.",
            code="UnknownZone",
        ) from exc
    try:
        local = datetime.fromisoformat(str(entry["start"]).rstrip("Z"))
        length = parse_duration(entry.get("duration") or "PT0S")
    except (KeyError, ValueError) as exc:
        raise base.InvalidItem(f"“{title}” has no readable start or duration ({exc}).") from exc
    organizer, attendees, my_status = "", [], ""
    for participant in (entry.get("participants") or {}).values():
        address = str(participant.get("email") or "").lower()
        if not address:
            continue
        roles = participant.get("roles") or {}
        status = str(participant.get("participationStatus") or "needs-action")
        if roles.get("owner"):
            organizer = address
            continue
        if address == mailbox.lower():
            my_status = status
        attendees.append(
            Attendee(
                email=address,
                name=str(participant.get("name") or ""),
                required=not roles.get("optional") and not roles.get("informational"),
                response=_RESPONSES.get(status, "NoResponseReceived"),
            )
        )
    organizer = organizer or mailbox.lower()
    locations = [v for v in (entry.get("locations") or {}).values() if isinstance(v, dict)]
    reminder = None
    for alert in (entry.get("alerts") or {}).values():
        offset = str(((alert or {}).get("trigger") or {}).get("offset") or "")
        if offset.startswith("-"):
            reminder = int(parse_duration(offset[1:]).total_seconds() // 60)
            break
    event = CalendarEvent(
        subject=str(entry.get("title") or ""),
        body=str(entry.get("description") or ""),
        location=str(locations[0].get("name") or "") if locations else "",
        time_zone=zone.key,
        is_private=entry.get("privacy") in ("private", "secret"),
        reminder_minutes=reminder,
        organizer=organizer,
        attendees=attendees,
        uid=str(entry.get("uid") or ""),
        is_meeting=bool(attendees),
        is_cancelled=entry.get("status") == "cancelled",
        my_response="Organizer"
        if organizer == mailbox.lower()
        else _RESPONSES.get(my_status, "NoResponseReceived"),
        sync_id=str((entry.get("AdditionalFields") or {}).get(SYNC_ID_FIELD) or ""),
        ref=ref_of(entry, folder_id),
        last_modified=parse_utc(entry.get("updated")),
    )
    if entry.get("showWithoutTime"):
        days = max(length.days, 1)
        event.is_all_day = True
        event.start_date = local.date()
        event.end_date = local.date() + timedelta(days=days)
        event.start = datetime.combine(event.start_date, time.min, zone).astimezone(UTC)
        event.end = datetime.combine(event.end_date, time.min, zone).astimezone(UTC)
    else:
        event.start = local.replace(tzinfo=zone).astimezone(UTC)
        event.end = event.start + length
    if entry.get("recurrenceRules"):
        try:
            text = rule_to_rrule(entry["recurrenceRules"][0])
            event.recurrence = recurrence.to_rrule(recurrence.parse_rrule(text, local.date()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise base.InvalidItem(f"“{title}” repeats in a way this product cannot read ({exc}).") from exc
        try:
            read_overrides(event, entry.get("recurrenceOverrides") or {}, zone)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise base.InvalidItem(f"“{title}” has a changed occurrence this product cannot read ({exc}).") from exc
    return event


# --- Changed and removed occurrences (JSCalendar ``recurrenceOverrides``) ----------------------------
#
# An override is keyed by its occurrence's recurrence id: the original start, local in the series'
# ``timeZone``. Its PatchObject says what differs from the generated occurrence: ``excluded`` (a
# removed occurrence), ``start`` / ``duration`` (moved), ``title``, ``locations``.


def _local_text(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")


def _local_moment(text: Any, zone: ZoneInfo) -> datetime:
    return datetime.fromisoformat(str(text).rstrip("Z")).replace(tzinfo=zone).astimezone(UTC)


def parse_overrides(overrides: dict[str, Any], zone: ZoneInfo) -> dict[datetime, dict[str, Any]]:
    """``recurrenceOverrides`` by original start (UTC); ValueError for one that is not a map."""
    if not isinstance(overrides, dict):
        raise ValueError("recurrenceOverrides is not a map")
    return {_local_moment(key, zone): dict(patch or {}) for key, patch in overrides.items()}


def read_overrides(event: CalendarEvent, overrides: dict[str, Any], zone: ZoneInfo) -> None:
    """Fill a series' removed and changed occurrences from its overrides (K10). A subject or
    location equal to the series' own is the series' (None), as Exchange's reads give them."""
    length = event.end - event.start
    for original, patch in sorted(parse_overrides(overrides, zone).items()):
        if patch.get("excluded"):
            event.deleted_occurrences.append(original)
            continue
        start = _local_moment(patch["start"], zone) if patch.get("start") else original
        duration = parse_duration(patch["duration"]) if patch.get("duration") else length
        end = start + duration
        if event.is_all_day:  # whole local days, whatever DST does to the hours between
            end = datetime.combine(start.astimezone(zone).date() + timedelta(days=max(duration.days, 1)), time.min, zone)
            end = end.astimezone(UTC)
        subject = str(patch["title"] or "") if "title" in patch else None
        location = None
        for pointer, value in patch.items():
            if pointer.lstrip("/") == "locations":
                names = [str(v.get("name") or "") for v in (value or {}).values() if isinstance(v, dict)]
                location = names[0] if names else ""
            elif pointer.lstrip("/").startswith("locations/") and pointer.endswith("/name"):
                location = str(value or "")
        event.modified_occurrences.append(
            base.Occurrence(
                original_start=original,
                start=start,
                end=end,
                subject=None if subject is None or subject == event.subject else subject,
                location=None if location is None or location == event.location else location,
            )
        )


def occurrence_patch(occurrence: base.Occurrence, event: CalendarEvent, zone: ZoneInfo) -> dict[str, Any]:
    """The PatchObject of one changed occurrence (empty: as the series generates it)."""
    patch: dict[str, Any] = {}
    length = event.end - event.start
    if occurrence.start != occurrence.original_start or occurrence.end - occurrence.start != length:
        patch["start"] = _local_text(occurrence.start, zone)
        if event.is_all_day:
            days = (occurrence.end.astimezone(zone).date() - occurrence.start.astimezone(zone).date()).days
            patch["duration"] = f"P{max(days, 1)}D"
        else:
            patch["duration"] = duration_text(occurrence.end - occurrence.start)
    if occurrence.subject is not None and occurrence.subject != event.subject:
        patch["title"] = occurrence.subject
    if occurrence.location is not None and occurrence.location != event.location:
        patch["locations"] = {"1": {"@type": "Location", "name": occurrence.location}} if occurrence.location else {}
    return patch


def overrides_body(
    event: CalendarEvent, names: set[str], current: dict[str, Any], current_zone: str
) -> dict[str, Any]:
    """The series' whole ``recurrenceOverrides`` after an update (K10): its current overrides
    (none when the pattern or the series' times are written: the engine then lists again every
    exception to keep, as Exchange drops them), with the listed occurrences removed or changed.
    An occurrence changed back to the series' own loses its override."""
    zone = _zone(event.time_zone or "UTC")
    kept: dict[datetime, dict[str, Any]] = {}
    if not names & set(base.PATTERN_FIELDS):
        kept = parse_overrides(current, _zone(current_zone or "UTC"))
    if "deleted_occurrences" in names:
        for original in event.deleted_occurrences:
            kept[original] = {"excluded": True}
    if "modified_occurrences" in names:
        for occurrence in event.modified_occurrences:
            patch = occurrence_patch(occurrence, event, zone)
            if patch:
                kept[occurrence.original_start] = patch
            else:
                kept.pop(occurrence.original_start, None)
    return {_local_text(original, zone): patch for original, patch in sorted(kept.items())}


_SHORT_DAYS = ("mo", "tu", "we", "th", "fr", "sa", "su")


def rule_to_rrule(rule: dict[str, Any]) -> str:
    """A JSCalendar RecurrenceRule as RRULE text (the two are the same thing in two spellings)."""
    parts = [f"FREQ={str(rule['frequency']).upper()}"]
    if rule.get("interval") and int(rule["interval"]) != 1:
        parts.append(f"INTERVAL={int(rule['interval'])}")
    days = []
    for nday in rule.get("byDay") or []:
        day = str(nday["day"]).lower()
        if day not in _SHORT_DAYS:
            raise ValueError(f"unknown day {day!r}")
        nth = nday.get("nthOfPeriod")
        days.append(f"{int(nth) if nth else ''}{day.upper()}")
    if days:
        parts.append("BYDAY=" + ",".join(days))
    for key, name in (("byMonthDay", "BYMONTHDAY"), ("byMonth", "BYMONTH"), ("bySetPosition", "BYSETPOS")):
        if rule.get(key):
            parts.append(f"{name}=" + ",".join(str(v) for v in rule[key]))
    if rule.get("count"):
        parts.append(f"COUNT={int(rule['count'])}")
    elif rule.get("until"):
        until = datetime.fromisoformat(str(rule["until"]).rstrip("Z"))
        parts.append(f"UNTIL={until:%Y%m%dT%H%M%S}")
    return ";".join(parts)


def rrule_to_rule(rrule: str) -> dict[str, Any]:
    """RRULE text (the engine's canonical spelling) as a JSCalendar RecurrenceRule."""
    parts = dict(p.split("=", 1) for p in rrule.upper().removeprefix("RRULE:").split(";") if "=" in p)
    rule: dict[str, Any] = {"@type": "RecurrenceRule", "frequency": parts["FREQ"].lower()}
    if "INTERVAL" in parts:
        rule["interval"] = int(parts["INTERVAL"])
    if "BYDAY" in parts:
        days = []
        for value in parts["BYDAY"].split(","):
            match = re.match(r"^([+-]?\d*)([A-Z]{2})$", value)
            if not match:
                raise ValueError(f"BYDAY {value!r}")
            nday: dict[str, Any] = {"@type": "NDay", "day": match[2].lower()}
            if match[1]:
                nday["nthOfPeriod"] = int(match[1])
            days.append(nday)
        rule["byDay"] = days
    if "BYMONTHDAY" in parts:
        rule["byMonthDay"] = [int(v) for v in parts["BYMONTHDAY"].split(",")]
    if "BYMONTH" in parts:
        rule["byMonth"] = parts["BYMONTH"].split(",")
    if "BYSETPOS" in parts:
        rule["bySetPosition"] = [int(v) for v in parts["BYSETPOS"].split(",")]
    if "WKST" in parts:
        rule["firstDayOfWeek"] = parts["WKST"].lower()
    if "COUNT" in parts:
        rule["count"] = int(parts["COUNT"])
    elif "UNTIL" in parts:
        value = parts["UNTIL"].rstrip("Z")
        day = f"{value[:4]}-{value[4:6]}-{value[6:8]}"
        rule["until"] = f"{day}T23:59:59" if len(value) == 8 else f"{day}T{value[9:11]}:{value[11:13]}:{value[13:15]}"
    return rule


# --- Writing --------------------------------------------------------------------------------------


def _participant_key(address: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{address.lower()}"))


def entry_body(event: CalendarEvent, mailbox: str, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The JSCalendar JSON of the named fields (all when None); the sync id always."""
    wanted: set[str] = set()
    for name in _PROPERTIES if names is None else names:
        wanted.update(_PROPERTIES.get(name, ()))
    body: dict[str, Any] = {"@type": "jsevent"} if names is None else {}
    if "title" in wanted:
        body["title"] = event.subject
    if "description" in wanted:
        body["description"] = event.body
        body["descriptionContentType"] = "text/plain"
    if "locations" in wanted:
        body["locations"] = {"1": {"@type": "Location", "name": event.location}} if event.location else {}
    if "start" in wanted:
        zone = _zone(event.time_zone or "UTC")
        body["timeZone"] = zone.key
        if event.is_all_day:
            first: date = event.start_date or event.start.astimezone(zone).date()
            last: date = event.end_date or event.end.astimezone(zone).date()
            body["start"] = datetime.combine(first, time.min).strftime("%Y-%m-%dT%H:%M:%S")
            body["duration"] = f"P{max((last - first).days, 1)}D"
            body["showWithoutTime"] = True
        else:
            body["start"] = event.start.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")
            body["duration"] = duration_text(event.end - event.start)
            body["showWithoutTime"] = False
    if "privacy" in wanted:
        body["privacy"] = "private" if event.is_private else "public"
    if "alerts" in wanted:
        body["alerts"] = (
            {
                "1": {
                    "@type": "Alert",
                    "trigger": {
                        "@type": "OffsetTrigger",
                        "offset": f"-PT{event.reminder_minutes}M",
                        "relativeTo": "start",
                    },
                }
            }
            if event.reminder_minutes is not None
            else {}
        )
    if "participants" in wanted:
        participants: dict[str, Any] = {}
        if event.attendees:
            owner = event.organizer or mailbox
            participants[_participant_key(owner)] = {
                "@type": "Participant",
                "email": owner,
                "roles": {"owner": True, "chair": True},
            }
        for attendee in event.attendees:
            participants[_participant_key(attendee.email)] = {
                "@type": "Participant",
                "email": attendee.email,
                **({"name": attendee.name} if attendee.name else {}),
                "roles": {"attendee": True} if attendee.required else {"optional": True},
            }
        body["participants"] = participants
    if "recurrenceRules" in wanted:
        if event.recurrence:
            zone = _zone(event.time_zone or "UTC")
            first = event.start_date if event.is_all_day and event.start_date else event.start.astimezone(zone).date()
            try:
                canonical = recurrence.to_rrule(recurrence.parse_rrule(event.recurrence, first, "domino"))
            except recurrence.Unrepresentable as exc:
                raise base.InvalidItem(str(exc), code="Unrepresentable") from exc
            body["recurrenceRules"] = [rrule_to_rule(canonical)]
        else:
            body["recurrenceRules"] = []
    if event.sync_id:
        body["AdditionalFields"] = {SYNC_ID_FIELD: event.sync_id}
    return body
