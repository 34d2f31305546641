"""The recurrences Exchange can represent, between RFC 5545 RRULEs (the engine's form) and the
backends' own shapes (EWS ``Recurrence``, Graph ``patternedRecurrence``).

Both protocols describe the same Exchange series, so the rules of what can be represented live
here once; each backend only renders a ``SeriesPattern`` in its own vocabulary. The numeric limits
of each protocol (how many occurrences, how far apart) are ``LIMITS``, one entry per protocol: the
CRM API refuses what any of them cannot carry (a mailbox may move to another backend, H2), and each
backend checks its own before it writes, so one bad series is one item error, never a failed batch.
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
class Limits:
    """What one protocol's series pattern can carry: the most occurrences of a numbered series and
    the widest interval per frequency (a frequency absent has no interval: always 1)."""

    protocol: str  # as people read it, in error messages
    max_count: int
    max_interval: dict[str, int]


# Exchange Web Services (exchangelib checks these before it sends: NumberedRecurrence 1…999,
# DailyRecurrence every 1…999 days, Weekly / (Relative)Monthly every 1…99; yearly patterns have no
# interval). Microsoft Graph writes the same Exchange store, which keeps the same limits (Outlook's
# own: at most 999 occurrences, every 999 days, 99 weeks, 99 months).
EWS_LIMITS = Limits("Exchange (EWS)", 999, {"DAILY": 999, "WEEKLY": 99, "MONTHLY": 99})
GRAPH_LIMITS = Limits("Exchange (Microsoft Graph)", 999, {"DAILY": 999, "WEEKLY": 99, "MONTHLY": 99})
# HCL Domino: the REST API takes JSCalendar rules (RFC 8984, RRULE in JSON); Notes repeats within
# Outlook's limits here (a series that syncs over Exchange syncs over Domino).
DOMINO_LIMITS = Limits("HCL Domino", 999, {"DAILY": 999, "WEEKLY": 99, "MONTHLY": 99})
LIMITS: dict[str, Limits] = {"ews": EWS_LIMITS, "graph": GRAPH_LIMITS, "domino": DOMINO_LIMITS}

_UNITS = {"DAILY": "days", "WEEKLY": "weeks", "MONTHLY": "months", "YEARLY": "years"}
_MONTH_LENGTHS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # a yearly day must exist (29 Feb)


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
    if {"COUNT", "UNTIL"} <= _parts(rule).keys():
        raise ValueError("COUNT and UNTIL together (a series ends after a number or on a date)")
    aware = (_parts(rule).get("UNTIL") or "").endswith("Z")
    rrulestr(rule, dtstart=datetime(2026, 1, 1, tzinfo=UTC if aware else None))


def parse_rrule(rrule: str, first: date, protocol: str | None = None) -> SeriesPattern:
    """The pattern of an RRULE whose first occurrence falls on ``first`` (in the event's zone),
    within the limits of ``protocol`` (a key of ``LIMITS``), or of every protocol when None."""
    names = [p.split("=", 1)[0] for p in rrule.upper().removeprefix("RRULE:").split(";") if "=" in p]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise Unrepresentable(f"{', '.join(twice)} is given more than once in the recurrence")
    parts = _parts(rrule)
    unsupported = set(parts) - _KNOWN_PARTS
    if unsupported:
        raise Unrepresentable(f"Exchange cannot represent {', '.join(sorted(unsupported))} in a recurrence")
    if "COUNT" in parts and "UNTIL" in parts:
        raise Unrepresentable("A recurrence ends after a number of occurrences (COUNT) or on a date (UNTIL), not both")
    try:
        pattern = _pattern(parts, first)
    except Unrepresentable:
        raise
    except (ValueError, IndexError):
        raise Unrepresentable(f"Exchange cannot represent the recurrence {rrule}") from None
    for limits in [LIMITS[protocol]] if protocol else LIMITS.values():
        check_limits(pattern, limits)
    return pattern


def check_limits(pattern: SeriesPattern, limits: Limits) -> None:
    """Raises Unrepresentable when a pattern is beyond what one protocol can carry."""
    widest = limits.max_interval.get(pattern.freq, 1)
    if pattern.interval > widest:
        unit = _UNITS[pattern.freq]
        raise Unrepresentable(
            f"{limits.protocol} repeats a {pattern.freq.lower()} event at most every {widest} {unit}"
            if widest > 1
            else f"{limits.protocol} cannot represent an INTERVAL on a {pattern.freq.lower()} event"
        )
    if pattern.count is not None and not 1 <= pattern.count <= limits.max_count:
        raise Unrepresentable(
            f"{limits.protocol} repeats an event 1 to {limits.max_count} times (COUNT); "
            "leave COUNT out for a series without an end"
        )


def _pattern(parts: dict[str, str], first: date) -> SeriesPattern:
    freq = parts.get("FREQ", "")
    interval = int(parts.get("INTERVAL", "1"))
    days, month_days, months = (
        _split(parts.get("BYDAY", "")),
        _split(parts.get("BYMONTHDAY", "")),
        _split(parts.get("BYMONTH", "")),
    )
    setpos = _split(parts.get("BYSETPOS", ""))
    if interval < 1:
        raise Unrepresentable("INTERVAL is a whole number from 1 on")
    if freq not in FREQUENCIES or len(month_days) > 1 or len(months) > 1 or len(setpos) > 1:
        raise ValueError
    if freq == "DAILY" and days:
        if interval != 1:
            raise ValueError
        freq = "WEEKLY"  # "every weekday" is a weekly pattern in Exchange
    if freq in ("DAILY", "WEEKLY") and (month_days or months or setpos):
        raise ValueError
    if freq == "WEEKLY" and any(d not in RRULE_DAYS for d in days):
        raise ValueError
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
    month = int(months[0]) if months else (first.month if freq == "YEARLY" else 0)
    if months and not 1 <= month <= 12:
        raise Unrepresentable("BYMONTH is a month from 1 to 12")
    if freq == "YEARLY" and day_of_month > _MONTH_LENGTHS[month - 1]:
        raise Unrepresentable(f"Month {month} has no day {day_of_month}")
    count = int(parts["COUNT"]) if "COUNT" in parts else None
    return SeriesPattern(
        freq=freq,
        start=first,
        interval=interval,
        weekdays=weekdays,
        day_of_month=day_of_month,
        month=month,
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
