"""JSCalendar ``recurrenceRules`` ⇄ the store's series pattern (through Graph's patternedRecurrence,
which the store already speaks). Overrides (``recurrenceOverrides``) are not rendered yet."""

from __future__ import annotations

from datetime import date
from typing import Any

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


def overrides_json(item: Item) -> dict[str, Any]:
    """The series' removed and changed occurrences as ``recurrenceOverrides`` (keyed by the
    occurrence's original local start, as JSCalendar's recurrence ids are)."""
    from datetime import datetime

    from exchange_sim.calendar import zone_for
    from exchange_sim.domino.jscalendar import duration_text

    zone = zone_for(item.props.get("StartTimeZone"))

    def local(value: datetime) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")

    out: dict[str, Any] = {}
    for key in item.props.get("_deleted") or []:
        out[local(datetime.fromisoformat(key.replace("Z", "+00:00")))] = {"excluded": True}
    for key, changes in (item.props.get("_exceptions") or {}).items():
        patch: dict[str, Any] = {}
        if changes.get("Start") and changes.get("End"):
            patch["start"] = local(changes["Start"])
            patch["duration"] = duration_text(changes["End"] - changes["Start"])
        if changes.get("Subject"):
            patch["title"] = changes["Subject"]
        if changes.get("Location"):
            patch["locations"] = {"1": {"@type": "Location", "name": changes["Location"]}}
        out.setdefault(local(datetime.fromisoformat(key.replace("Z", "+00:00"))), patch)
    return out
