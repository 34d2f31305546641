"""The recurrences Exchange can represent, between RFC 5545 RRULEs (the engine's form) and the
backends' own shapes (EWS ``Recurrence``, Graph ``patternedRecurrence``).

Both protocols describe the same Exchange series, so the rules of what can be represented live
here once; each backend only renders a ``SeriesPattern`` in its own vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from dateutil.rrule import rrulestr

RRULE_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")  # index 0 = Monday
FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_KNOWN_PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"}


WEEK_INDEXES = (1, 2, 3, 4, -1)  # first … fourth, last
# The day sets a relative pattern may name besides one day (EWS: Day, Weekday, WeekendDay).
EVERY_DAY, WEEKDAYS, WEEKEND = (0, 1, 2, 3, 4, 5, 6), (0, 1, 2, 3, 4), (5, 6)
RELATIVE_DAY_SETS = (EVERY_DAY, WEEKDAYS, WEEKEND)


class Unrepresentable(ValueError):
    """An RRULE Exchange has no pattern for: the item is refused, not written differently."""


@dataclass(frozen=True)
class SeriesPattern:
    """One Exchange series pattern. Days of the week count from 0 = Monday.

    ``week_index`` (1…4, -1 = last) makes a monthly or yearly pattern relative: "the second
    Tuesday", "the last weekday", "the last day" (every day, -1)."""

    freq: str
    start: date
    interval: int = 1
    weekdays: tuple[int, ...] = ()
    day_of_month: int = 0
    month: int = 0
    week_index: int = 0
    count: int | None = None
    until: date | None = None


def _parts(rrule: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in rrule.upper().removeprefix("RRULE:").split(";") if "=" in part)


def _day(value: str) -> date:
    return date(int(value[:4]), int(value[4:6]), int(value[6:8]))


def _split(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def check_syntax(rrule: str) -> None:
    """Raises ValueError for what is not an RFC 5545 RRULE. UNTIL may be a UTC time (…Z) or a
    floating day or time: clients write both."""
    rule = rrule.strip().upper().removeprefix("RRULE:")
    aware = (_parts(rule).get("UNTIL") or "").endswith("Z")
    rrulestr(rule, dtstart=datetime(2026, 1, 1, tzinfo=UTC if aware else None))


def parse_rrule(rrule: str, first: date) -> SeriesPattern:
    """The pattern of an RRULE whose first occurrence falls on ``first`` (in the event's zone)."""
    parts = _parts(rrule)
    unsupported = set(parts) - _KNOWN_PARTS
    if unsupported:
        raise Unrepresentable(f"Exchange cannot represent {', '.join(sorted(unsupported))} in a recurrence")
    try:
        return _pattern(parts, first)
    except (ValueError, IndexError):
        raise Unrepresentable(f"Exchange cannot represent the recurrence {rrule}") from None


def _pattern(parts: dict[str, str], first: date) -> SeriesPattern:
    freq = parts.get("FREQ", "")
    interval = int(parts.get("INTERVAL", "1"))
    days, month_days, months = (
        _split(parts.get("BYDAY", "")),
        _split(parts.get("BYMONTHDAY", "")),
        _split(parts.get("BYMONTH", "")),
    )
    setpos = _split(parts.get("BYSETPOS", ""))
    if freq not in FREQUENCIES or interval < 1 or len(month_days) > 1 or len(months) > 1 or len(setpos) > 1:
        raise ValueError
    if freq == "DAILY" and days:
        if interval != 1:
            raise ValueError
        freq = "WEEKLY"  # "every weekday" is a weekly pattern in Exchange
    if freq in ("DAILY", "WEEKLY") and (month_days or months or setpos):
        raise ValueError
    if freq == "WEEKLY" and any(d not in RRULE_DAYS for d in days):
        raise ValueError
    if freq == "YEARLY" and interval != 1:
        raise ValueError  # EWS has no interval on yearly patterns; both backends refuse alike
    if freq == "MONTHLY" and months:
        raise ValueError
    weekdays, week_index, day_of_month = (), 0, 0
    if freq == "WEEKLY":
        weekdays = tuple(sorted({RRULE_DAYS.index(d) for d in days})) or (first.weekday(),)
    elif days:
        if month_days:
            raise ValueError
        weekdays, week_index = _relative(days, setpos)
    elif month_days == ["-1"]:
        weekdays, week_index = EVERY_DAY, -1  # the last day of the month
    elif freq in ("MONTHLY", "YEARLY"):
        if setpos:
            raise ValueError
        day_of_month = int(month_days[0]) if month_days else first.day
        if not 1 <= day_of_month <= 31:
            raise ValueError
    count = int(parts["COUNT"]) if "COUNT" in parts else None
    return SeriesPattern(
        freq=freq,
        start=first,
        interval=interval,
        weekdays=weekdays,
        day_of_month=day_of_month,
        month=int(months[0]) if months else (first.month if freq == "YEARLY" else 0),
        week_index=week_index,
        count=count,
        until=_day(parts["UNTIL"]) if "UNTIL" in parts and count is None else None,
    )


def _relative(days: list[str], setpos: list[str]) -> tuple[tuple[int, ...], int]:
    """BYDAY=2TU, or BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1: the days and the week index."""
    if setpos:
        index = int(setpos[0])
        chosen = tuple(sorted({RRULE_DAYS.index(d) for d in days}))
    else:
        if len(days) != 1:
            raise ValueError
        index, chosen = int(days[0][:-2]), (RRULE_DAYS.index(days[0][-2:]),)
    if index not in WEEK_INDEXES or (len(chosen) > 1 and chosen not in RELATIVE_DAY_SETS):
        raise ValueError
    return chosen, index


def to_rrule(pattern: SeriesPattern) -> str:
    """The RRULE of a pattern read from Exchange, in the engine's canonical spelling (keys sorted,
    the same text whichever backend read it)."""
    parts = {"FREQ": pattern.freq}
    if pattern.freq == "WEEKLY":
        parts["BYDAY"] = ",".join(RRULE_DAYS[d] for d in sorted(pattern.weekdays))
    elif pattern.week_index and pattern.weekdays == EVERY_DAY:
        parts["BYMONTHDAY"] = str(pattern.week_index)
    elif pattern.week_index and len(pattern.weekdays) == 1:
        parts["BYDAY"] = f"{pattern.week_index}{RRULE_DAYS[pattern.weekdays[0]]}"
    elif pattern.week_index:
        parts["BYDAY"] = ",".join(RRULE_DAYS[d] for d in sorted(pattern.weekdays))
        parts["BYSETPOS"] = str(pattern.week_index)
    elif pattern.freq in ("MONTHLY", "YEARLY"):
        parts["BYMONTHDAY"] = str(pattern.day_of_month)
    if pattern.freq == "YEARLY":
        parts["BYMONTH"] = str(pattern.month)
    if pattern.interval != 1:
        parts["INTERVAL"] = str(pattern.interval)
    if pattern.count is not None:
        parts["COUNT"] = str(pattern.count)
    elif pattern.until is not None:
        parts["UNTIL"] = f"{pattern.until:%Y%m%d}"
    return ";".join(f"{k}={v}" for k, v in sorted(parts.items()))
