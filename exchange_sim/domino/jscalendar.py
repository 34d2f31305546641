"""Calendar items of the store ⇄ JSCalendar ``jsevent`` objects, as the Domino REST API writes them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchange_sim import meetings
from exchange_sim.calendar import zone_for
from exchange_sim.domino.frontend import DominoError
from exchange_sim.store import ExtendedKey, Item

if TYPE_CHECKING:
    from exchange_sim.domino.frontend import DominoFrontEnd

STATUS_OF_RESPONSE = {
    "Accept": "accepted",
    "Organizer": "accepted",
    "Decline": "declined",
    "Tentative": "tentative",
    "Unknown": "needs-action",
    "NoResponseReceived": "needs-action",
}
RESPONSE_OF_STATUS = {"accepted": "Accept", "declined": "Decline", "tentative": "Tentative", "needs-action": "Unknown"}
WRITABLE = {
    "@type", "uid", "title", "description", "descriptionContentType", "start", "duration", "timeZone",
    "showWithoutTime", "locations", "participants", "privacy", "alerts", "status", "AdditionalFields",
    "categories", "keywords", "created", "updated", "referenceFolder", "sequence", "useDefaultAlerts",
}  # fmt: skip
_DURATION = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


# ---- time -----------------------------------------------------------------------------------------------
def iana_of(stored: str | None) -> str:
    return zone_for(stored).key if stored else "UTC"


def store_zone(name: str) -> str:
    """What goes into StartTimeZone for an IANA name: its Windows id when the calendar layer has one."""
    from exchange_sim.calendar import windows_zone_for

    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DominoError(400, f"Unknown timeZone '{name}'.") from None
    if zone.key in {"UTC", "Etc/UTC"}:
        return "UTC"
    windows = windows_zone_for(zone.key)
    return windows if windows and zone_for(windows).key == zone.key else zone.key


def duration_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    time_part = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "")
    if time_part:
        out += "T" + time_part
    return out if out != "P" else "PT0S"


def parse_duration(text: Any) -> timedelta:
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise DominoError(400, f"'duration' is not a Duration: {text!r}.")
    weeks, days, hours, minutes, secs = (int(g or 0) for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=secs)


def parse_local(text: Any, zone: ZoneInfo) -> datetime:
    if not isinstance(text, str):
        raise DominoError(400, "'start' must be a LocalDateTime string.")
    try:
        value = datetime.fromisoformat(text.rstrip("Z"))
    except ValueError:
        raise DominoError(400, f"'start' is not a LocalDateTime: {text!r}.") from None
    if value.tzinfo is not None:
        raise DominoError(400, "'start' is a LocalDateTime: no offset (the zone is 'timeZone').")
    return value.replace(tzinfo=zone).astimezone(UTC)


def utc_text(value: datetime) -> str:
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    return text + "Z"


def _known_zone(stored: str | None) -> bool:
    """Whether a stored zone id names a real zone (an unknown one is answered as it is stored)."""
    from exchange_sim.calendar import WINDOWS_TO_IANA

    if not stored:
        return True
    try:
        ZoneInfo(WINDOWS_TO_IANA.get(stored, stored))
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


# ---- rendering ------------------------------------------------------------------------------------------
def _participant_id(address: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{address.lower()}"))


def entry_json(front: DominoFrontEnd, item: Item) -> dict[str, Any]:
    props = item.props
    stored_zone = props.get("StartTimeZone")
    zone = zone_for(stored_zone) if stored_zone else ZoneInfo("UTC")
    all_day = bool(props.get("IsAllDayEvent"))
    start: datetime = props["Start"]
    end: datetime = props["End"]
    local_start = start.astimezone(zone).replace(tzinfo=None)
    body: dict[str, Any] = {
        "@type": "jsevent",
        "uid": props.get("UID"),
        "title": props.get("Subject") or "",
        "start": local_start.strftime("%Y-%m-%dT%H:%M:%S"),
        "timeZone": zone.key if _known_zone(stored_zone) else str(stored_zone),
        "duration": duration_text(end - start),
        "privacy": "private" if props.get("Sensitivity") in {"Private", "Confidential", "Personal"} else "public",
        "created": utc_text(item.created or front.sim.clock.now()),
        "updated": utc_text(front.updated(item)),
        "referenceFolder": [item.folder_id[-32:]],
    }
    if all_day:
        body["showWithoutTime"] = True
        days = max((end.astimezone(zone).date() - start.astimezone(zone).date()).days, 1)
        body["duration"] = f"P{days}D"
    if props.get("Body"):
        body["description"] = item.body_text
        body["descriptionContentType"] = "text/plain"
    if props.get("Location"):
        body["locations"] = location_map(props["Location"])
    if props.get("IsCancelled"):
        body["status"] = "cancelled"
    if props.get("ReminderIsSet", True) and props.get("ReminderMinutesBeforeStart") is not None:
        minutes = int(props["ReminderMinutesBeforeStart"])
        body["alerts"] = {"1": {"@type": "Alert", "trigger": {"@type": "OffsetTrigger", "offset": f"-PT{minutes}M", "relativeTo": "start"}}}
    participants = _participants(item)
    if participants:
        body["participants"] = participants
    fields = {key.name: value for key, value in item.extended.items() if key.name and isinstance(value, str)}
    if fields:
        body["AdditionalFields"] = fields
    if props.get("Recurrence"):
        from exchange_sim.domino.recurrence import overrides_json, rules_json

        body["recurrenceRules"] = rules_json(item)
        overrides = overrides_json(item)
        if overrides:
            body["recurrenceOverrides"] = overrides
    return body


def location_map(name: str | None) -> dict[str, Any]:
    """A location as JSCalendar's ``locations`` map (empty for none)."""
    return {_participant_id("location:" + name): {"@type": "Location", "name": name}} if name else {}


def _participants(item: Item) -> dict[str, Any]:
    props = item.props
    names = ("RequiredAttendees", "OptionalAttendees", "Resources")
    if not any(props.get(n) for n in names):
        return {}
    organizer = (props.get("Organizer") or {}).get("EmailAddress") or ""
    out: dict[str, Any] = {}
    if organizer:
        out[_participant_id(organizer)] = {
            "@type": "Participant",
            "email": organizer,
            "name": (props.get("Organizer") or {}).get("Name") or organizer,
            "roles": {"owner": True, "chair": True},
            "participationStatus": "accepted",
        }
    for name in names:
        for attendee in props.get(name) or []:
            mailbox = attendee.get("Mailbox") or {}
            address = mailbox.get("EmailAddress") or ""
            if not address or address.lower() == organizer.lower():
                continue
            role = {"RequiredAttendees": "attendee", "OptionalAttendees": "optional", "Resources": "informational"}[name]
            out[_participant_id(address)] = {
                "@type": "Participant",
                "email": address,
                "name": mailbox.get("Name") or address,
                "roles": {role: True},
                "participationStatus": STATUS_OF_RESPONSE.get(attendee.get("ResponseType") or "Unknown", "needs-action"),
            }
    if not meetings.is_organizer_copy(item):
        mine = item.mailbox.lower()
        for participant in out.values():
            if participant["email"].lower() == mine and props.get("MyResponseType"):
                participant["participationStatus"] = STATUS_OF_RESPONSE.get(props["MyResponseType"], "needs-action")
    return out


# ---- writing --------------------------------------------------------------------------------------------
def title_and_description(data: dict[str, Any], set_props: dict[str, Any], delete: list[str]) -> None:
    """A JSCalendar object's ``title`` and ``description`` as the store's Subject and Body (an entry
    and a To Do alike); an emptied description removes the body."""
    if "title" in data:
        set_props["Subject"] = str(data["title"] or "")
    if "description" in data:
        text = str(data["description"] or "")
        html = str(data.get("descriptionContentType") or "text/plain").lower() == "text/html"
        if text:
            set_props["Body"] = {"type": "HTML" if html else "Text", "content": text}
        else:
            delete.append("Body")


def additional_fields(data: dict[str, Any], current: Item | None) -> dict[ExtendedKey, Any]:
    """``AdditionalFields`` (an entry's and a To Do's) as string extended properties, keeping the
    key of one the item already has."""
    extended: dict[ExtendedKey, Any] = {}
    fields = data.get("AdditionalFields") or {}
    if not isinstance(fields, dict):
        raise DominoError(400, "'AdditionalFields' must be an object.")
    for name, value in fields.items():
        key = next((k for k in (current.extended if current else {}) if k.name == name), None)
        extended[key or ExtendedKey.create("String", distinguished_set="PublicStrings", name=str(name))] = str(value)
    return extended


def entry_changes(
    data: dict[str, Any], current: Item | None, owner: str, new_changekey: Callable[[], str] | None = None
) -> tuple[dict[str, Any], list[str], dict[ExtendedKey, Any]]:
    """A JSCalendar body as store writes (set, delete, extended). Properties left out stay as they
    are; ``recurrenceOverrides``, when given, is the series' whole set of changed and removed
    occurrences (``_exceptions`` and ``_deleted``)."""
    unknown = set(data) - WRITABLE - {"recurrenceRules", "recurrenceOverrides"}
    if unknown:
        raise DominoError(400, f"Unknown property '{sorted(unknown)[0]}'.")
    if data.get("@type", "jsevent").lower() != "jsevent":
        raise DominoError(400, "A calendar entry is a '@type': 'jsevent'.")
    props = current.props if current is not None else {}
    set_props: dict[str, Any] = {}
    delete: list[str] = []
    title_and_description(data, set_props, delete)
    zone_name = data.get("timeZone") or (iana_of(props.get("StartTimeZone")) if current else "UTC")
    zone = ZoneInfo(iana_of(store_zone(zone_name)))
    all_day = bool(data.get("showWithoutTime", props.get("IsAllDayEvent", False)))
    if "start" in data or "duration" in data or "timeZone" in data or "showWithoutTime" in data:
        if "start" in data:
            start = parse_local(data["start"], zone)
        elif current is not None:
            start = props["Start"]
        else:
            raise DominoError(400, "A calendar entry needs a 'start'.")
        if "duration" in data:
            length = parse_duration(data["duration"])
        elif current is not None:
            length = props["End"] - props["Start"]
        else:
            length = timedelta(days=1) if all_day else timedelta(0)
        end = start + length
        if all_day:  # whole local days, whatever a DST change does to the hours between
            local = start.astimezone(zone)
            end = datetime.combine(local.date() + timedelta(days=max(length.days, 1)), datetime.min.time(), zone).astimezone(UTC)
        set_props.update(
            Start=start,
            End=end,
            StartTimeZone=store_zone(zone_name),
            EndTimeZone=store_zone(zone_name),
            IsAllDayEvent=all_day,
        )
    elif current is None:
        raise DominoError(400, "A calendar entry needs a 'start'.")
    if "locations" in data:
        locations = data["locations"] or {}
        if not isinstance(locations, dict):
            raise DominoError(400, "'locations' must be a map of Location objects.")
        names = [str(v.get("name") or "") for v in locations.values() if isinstance(v, dict)]
        if names and names[0]:
            set_props["Location"] = names[0]
        else:
            delete.append("Location")
    if "privacy" in data:
        set_props["Sensitivity"] = "Private" if data["privacy"] in {"private", "secret"} else "Normal"
    if "alerts" in data:
        alerts = data["alerts"] or {}
        minutes = None
        for alert in alerts.values() if isinstance(alerts, dict) else []:
            offset = str(((alert or {}).get("trigger") or {}).get("offset") or "")
            if offset.startswith("-"):
                minutes = int(parse_duration(offset[1:]).total_seconds() // 60)
                break
        if minutes is None:
            set_props["ReminderIsSet"] = False
        else:
            set_props.update(ReminderIsSet=True, ReminderMinutesBeforeStart=minutes)
    if "participants" in data:
        _write_participants(data["participants"] or {}, props, owner, set_props, delete)
    if "recurrenceRules" in data:
        from exchange_sim.domino.recurrence import parse_rules

        first = set_props.get("Start", props.get("Start"))
        if data["recurrenceRules"]:
            set_props["Recurrence"] = parse_rules(data["recurrenceRules"], first.astimezone(zone).date())
        else:
            delete.append("Recurrence")
    extended = additional_fields(data, current)
    start, end = set_props.get("Start", props.get("Start")), set_props.get("End", props.get("End"))
    if start is not None and end is not None and end < start:
        raise DominoError(400, "The end of an entry must not be before its start.")
    if "recurrenceOverrides" in data:
        from exchange_sim.domino.recurrence import parse_overrides

        series = {k: v for k, v in {**props, **set_props}.items() if k not in delete}
        exceptions, deleted = parse_overrides(data["recurrenceOverrides"] or {}, series, new_changekey or (lambda: ""))
        set_props.update(_exceptions=exceptions, _deleted=deleted)
    return set_props, delete, extended


def _write_participants(
    value: Any, props: dict[str, Any], owner: str, set_props: dict[str, Any], delete: list[str]
) -> None:
    if not isinstance(value, dict):
        raise DominoError(400, "'participants' must be a map of Participant objects.")
    known: dict[str, dict[str, Any]] = {}
    for name in ("RequiredAttendees", "OptionalAttendees", "Resources"):
        for attendee in props.get(name) or []:
            known[((attendee.get("Mailbox") or {}).get("EmailAddress") or "").lower()] = attendee
    lists: dict[str, list[dict[str, Any]]] = {"RequiredAttendees": [], "OptionalAttendees": [], "Resources": []}
    for participant in value.values():
        if not isinstance(participant, dict):
            raise DominoError(400, "A participant must be an object.")
        address = participant.get("email")
        if not isinstance(address, str) or "@" not in address:
            raise DominoError(400, "A participant needs an 'email'.")
        roles = participant.get("roles") or {}
        if roles.get("owner") or address.lower() == owner.lower():
            continue
        element = "OptionalAttendees" if roles.get("optional") else "Resources" if roles.get("informational") else "RequiredAttendees"
        previous = known.get(address.lower(), {})
        mailbox = {"Name": participant.get("name") or address, "EmailAddress": address, "RoutingType": "SMTP", "MailboxType": "Mailbox"}
        lists[element].append({"Mailbox": mailbox, "ResponseType": previous.get("ResponseType", "Unknown")})
    for element, attendees in lists.items():
        if attendees:
            set_props[element] = attendees
        elif props.get(element) or element in set_props:
            delete.append(element)
