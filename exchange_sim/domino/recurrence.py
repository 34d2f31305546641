"""JSCalendar ``recurrenceRules`` ⇄ the store's series pattern (through Graph's patternedRecurrence,
which the store already speaks), and ``recurrenceOverrides`` ⇄ the series' changed occurrences
(``_exceptions``) and removed ones (``_deleted``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from exchange_sim.calendar import zone_for
from exchange_sim.domino.frontend import DominoError
from exchange_sim.graph.errors import GraphError
from exchange_sim.graph.events import parse_recurrence, recurrence_json
from exchange_sim.store import Item

DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
SHORT = ["mo", "tu", "we", "th", "fr", "sa", "su"]
INDEX = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}


def rules_json(item: Item) -> list[dict[str, Any]]:
    graph = recurrence_json(item)
    if not graph:
        return []
    pattern, rng = graph["pattern"], graph["range"]
    kind = pattern["type"]
    rule: dict[str, Any] = {"@type": "RecurrenceRule", "frequency": "daily"}
    days = [{"@type": "NDay", "day": SHORT[DAYS.index(d)]} for d in pattern.get("daysOfWeek") or []]
    nth = INDEX.get(pattern.get("index") or "first", 1)
    if kind == "daily":
        rule["frequency"] = "daily"
    elif kind == "weekly":
        rule.update(frequency="weekly", byDay=days, firstDayOfWeek=SHORT[DAYS.index(pattern["firstDayOfWeek"])])
    elif kind in ("absoluteMonthly", "absoluteYearly"):
        rule.update(frequency="monthly" if kind == "absoluteMonthly" else "yearly", byMonthDay=[pattern["dayOfMonth"]])
    else:
        rule["frequency"] = "monthly" if kind == "relativeMonthly" else "yearly"
        if len(days) == 1:
            rule["byDay"] = [{**days[0], "nthOfPeriod": nth}]
        else:
            rule.update(byDay=days, bySetPosition=[nth])
    if kind.endswith("Yearly"):
        rule["byMonth"] = [str(pattern["month"])]
    if pattern.get("interval", 1) != 1:
        rule["interval"] = pattern["interval"]
    if rng["type"] == "numbered":
        rule["count"] = rng["numberOfOccurrences"]
    elif rng["type"] == "endDate":
        rule["until"] = f"{rng['endDate']}T23:59:59"
    return [rule]


def parse_rules(value: Any, first: date) -> dict[str, Any] | None:
    """The store's Recurrence of a ``recurrenceRules`` list (one rule; None for none)."""
    if not value:
        return None
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        raise DominoError(400, "'recurrenceRules' takes one RecurrenceRule.")
    rule = value[0]
    frequency = str(rule.get("frequency") or "").lower()
    days = []
    nth = 0
    for entry in rule.get("byDay") or []:
        short = str((entry or {}).get("day") or "").lower()
        if short not in SHORT:
            raise DominoError(400, f"Unknown day '{short}' in byDay.")
        days.append(DAYS[SHORT.index(short)])
        nth = int(entry.get("nthOfPeriod") or nth)
    if rule.get("bySetPosition"):
        nth = int(rule["bySetPosition"][0])
    index = {v: k for k, v in INDEX.items()}.get(nth or 1, "first")
    month_days = rule.get("byMonthDay") or []
    months = rule.get("byMonth") or []
    pattern: dict[str, Any] = {"interval": int(rule.get("interval") or 1)}
    if frequency == "daily":
        pattern["type"] = "daily"
    elif frequency == "weekly":
        first_day = str(rule.get("firstDayOfWeek") or "mo").lower()
        pattern.update(type="weekly", daysOfWeek=days or [DAYS[first.weekday()]], firstDayOfWeek=DAYS[SHORT.index(first_day)])
    elif frequency in ("monthly", "yearly"):
        kind = "Monthly" if frequency == "monthly" else "Yearly"
        if days:
            pattern.update(type=f"relative{kind}", daysOfWeek=days, index=index)
        else:
            pattern.update(type=f"absolute{kind}", dayOfMonth=int(month_days[0]) if month_days else first.day)
        if kind == "Yearly":
            pattern["month"] = int(months[0]) if months else first.month
    else:
        raise DominoError(501, f"Repeating '{frequency}' is not implemented by the simulator.")
    rng: dict[str, Any] = {"type": "noEnd", "startDate": first.isoformat()}
    if rule.get("count"):
        rng.update(type="numbered", numberOfOccurrences=int(rule["count"]))
    elif rule.get("until"):
        rng.update(type="endDate", endDate=str(rule["until"])[:10])
    try:
        return parse_recurrence({"pattern": pattern, "range": rng})
    except GraphError as exc:
        raise DominoError(400, exc.message if hasattr(exc, "message") else str(exc)) from None


def _local(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")


def _patch_of(changes: dict[str, Any], original: datetime, props: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """One changed occurrence as a JSCalendar PatchObject: what differs from the generated
    occurrence (its start and duration when moved, its title, its location)."""
    from exchange_sim.domino.jscalendar import duration_text, location_map

    patch: dict[str, Any] = {}
    length = props["End"] - props["Start"]
    start, end = changes.get("Start") or original, changes.get("End")
    end = end or start + length
    if start != original or end - start != length:
        patch["start"] = _local(start, zone)
        if props.get("IsAllDayEvent"):
            days = max((end.astimezone(zone).date() - start.astimezone(zone).date()).days, 1)
            patch["duration"] = f"P{days}D"
        else:
            patch["duration"] = duration_text(end - start)
    if "Subject" in changes:
        patch["title"] = changes["Subject"] or ""
    if "Location" in changes:
        patch["locations"] = location_map(changes["Location"])
    return patch


def overrides_json(item: Item) -> dict[str, Any]:
    """The series' removed and changed occurrences as ``recurrenceOverrides``, keyed by the
    occurrence's recurrence id (its original start, local in the series' ``timeZone``)."""
    zone = zone_for(item.props.get("StartTimeZone"))
    out: dict[str, Any] = {}
    for key in item.props.get("_deleted") or []:
        out[_local(_from_key(key), zone)] = {"excluded": True}
    for key, changes in (item.props.get("_exceptions") or {}).items():
        original = _from_key(key)
        out.setdefault(_local(original, zone), _patch_of(changes, original, item.props, zone))
    return dict(sorted(out.items()))


def _from_key(key: str) -> datetime:
    return datetime.fromisoformat(key.replace("Z", "+00:00"))


# Pointers a PatchObject may carry that JSCalendar says to ignore in an override.
IGNORED_POINTERS = (
    "@type", "excludedRecurrenceRules", "method", "privacy", "prodId", "recurrenceId",
    "recurrenceOverrides", "recurrenceRules", "relatedTo", "replyTo", "uid",
)  # fmt: skip


def parse_overrides(value: Any, props: dict[str, Any], new_changekey: Any) -> tuple[dict[str, Any], list[str]]:
    """A ``recurrenceOverrides`` map as the store's (``_exceptions``, ``_deleted``) of the series
    ``props`` (as written, pattern and all): the whole set, replacing the series' own. An
    override of an occurrence the series has already, with the same patch, keeps its store
    entry (its change key), so rewriting the set moves only what changed."""
    from exchange_sim.calendar import iso_key, occurrences
    from exchange_sim.domino.jscalendar import parse_duration, parse_local

    if not isinstance(value, dict):
        raise DominoError(400, "'recurrenceOverrides' must be a map of recurrence ids to PatchObjects.")
    if value and not props.get("Recurrence"):
        raise DominoError(400, "'recurrenceOverrides' needs 'recurrenceRules'.")
    zone = zone_for(props.get("StartTimeZone"))
    master = Item(id="", changekey="", mailbox="", folder_id="", kind="CalendarItem", props=props)
    generated = {o.original_start for o in occurrences(master)} if value else set()
    known: dict[str, Any] = props.get("_exceptions") or {}
    length = props["End"] - props["Start"]
    exceptions: dict[str, Any] = {}
    deleted: list[str] = []
    for recurrence_id, patch in value.items():
        original = parse_local(recurrence_id, zone)
        if original not in generated:
            raise DominoError(501, f"'{recurrence_id}' is not an occurrence of the rule (added occurrences are not implemented by the simulator).")
        if not isinstance(patch, dict):
            raise DominoError(400, f"The override of '{recurrence_id}' must be a PatchObject.")
        key = iso_key(original)
        if patch.get("excluded"):
            if set(patch) - {"excluded", "@type"}:
                raise DominoError(400, "An excluded occurrence must not patch any other property.")
            deleted.append(key)
            continue
        changes: dict[str, Any] = {}
        start, duration = original, None
        for pointer, patched in patch.items():
            name = pointer.lstrip("/")
            if name.startswith(IGNORED_POINTERS) or name == "excluded":
                continue
            if name == "title":
                changes["Subject"] = str(patched or "")
            elif name == "start":
                start = parse_local(patched, zone)
            elif name == "duration":
                duration = parse_duration(patched)
            elif name == "locations":
                names = [str(v.get("name") or "") for v in (patched or {}).values() if isinstance(v, dict)]
                changes["Location"] = names[0] if names and names[0] else None
            elif name.startswith("locations/") and name.endswith("/name"):
                changes["Location"] = str(patched or "") or None
            else:
                raise DominoError(501, f"Patching '{name}' of an occurrence is not implemented by the simulator.")
        if start != original or duration is not None:
            end = start + (duration if duration is not None else length)
            if props.get("IsAllDayEvent"):
                days = max((duration or length).days, 1)
                end = datetime.combine(start.astimezone(zone).date() + timedelta(days=days), time.min, zone).astimezone(UTC)
            changes.update(Start=start, End=end)
        previous = known.get(key)
        if previous is not None and _patch_of(previous, original, props, zone) == _patch_of(changes, original, props, zone):
            exceptions[key] = previous
        else:
            exceptions[key] = {**changes, "_changekey": new_changekey()}
    return exceptions, sorted(deleted)
