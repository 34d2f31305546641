"""CRM values the API hands in: time zones, moments, recurrences Exchange can represent, and
model validation messages under the API's field names."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from synccore.crmio.base import Errors
from synccore.mailbox import recurrence
from synccore.models.crm import is_time_zone

# --- times and recurrence -------------------------------------------------------------------------


def zone_or_utc(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_zone(name: str, errors: Errors) -> ZoneInfo | None:
    if is_time_zone(name):
        return ZoneInfo(name)
    errors.setdefault("time_zone", []).append(f"“{name}” is not a known IANA time zone (e.g. Europe/Amsterdam).")
    return None


def midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def parse_moment(value: str, all_day: bool, zone: ZoneInfo, name: str, errors: Errors) -> datetime | None:
    value = (value or "").strip()
    if all_day:
        day = parse_date(value) if len(value) == 10 else None
        if day is None:
            errors.setdefault(name, []).append(
                "An all-day activity takes dates (YYYY-MM-DD); the end is exclusive."
            )
            return None
        return midnight(day, zone)
    return parse_aware(value, name, errors)


def parse_aware(value: str, name: str, errors: Errors) -> datetime | None:
    try:
        moment = parse_datetime(value or "")
    except ValueError:
        moment = None
    if moment is None:
        errors.setdefault(name, []).append("Give an ISO 8601 date and time with its UTC offset.")
        return None
    if timezone.is_naive(moment):
        errors.setdefault(name, []).append("Give the UTC offset (e.g. 2026-05-04T09:00:00+02:00).")
        return None
    try:
        return to_utc(moment)
    except ValueError:
        errors.setdefault(name, []).append("This moment is out of range.")
        return None


def to_utc(moment: datetime) -> datetime:
    """In UTC: databases refuse some offsets ISO 8601 allows (PostgreSQL: beyond ±15:59).

    ValueError when the moment is out of range once converted (year 1 or 9999 at the edge).
    """
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("out of range") from exc


def iso_moment(value: Any, name: str, errors: Errors) -> str:
    if not isinstance(value, str):
        errors.setdefault(name, []).append("Give ISO 8601 date-times with their UTC offset.")
        return ""
    moment = parse_aware(value, name, errors)
    return moment.isoformat() if moment else ""


def parse_exception(value: Any, errors: Errors) -> dict[str, Any]:
    if not isinstance(value, dict) or "original_start" not in value:
        errors.setdefault("exceptions", []).append(
            "Each exception is an object {original_start, start, end, subject, location}."
        )
        return {}
    result = {"original_start": iso_moment(value["original_start"], "exceptions", errors)}
    for key in ("start", "end"):
        if value.get(key):
            result[key] = iso_moment(value[key], "exceptions", errors)
    for key in ("subject", "location"):
        if key in value:
            result[key] = "" if value[key] is None else str(value[key])
    return result


def parse_recurrence(value: str | None, errors: Errors) -> str:
    rule = (value or "").strip()
    if rule.upper().startswith("RRULE:"):
        rule = rule[6:]
    if not rule:
        return ""
    problem = recurrence_problem(rule)
    if problem:
        errors.setdefault("recurrence", []).append(problem)
    return rule


_WEEKDAYS = {"MO", "TU", "WE", "TH", "FR", "SA", "SU"}


def recurrence_problem(rule: str) -> str:
    """Why Exchange cannot represent this RRULE, or '' when it can: the reasons people understand
    first, then the backends' own rule (``mailbox.recurrence``), so nothing accepted here is
    refused when written."""
    problem = _recurrence_explained(rule)
    if problem:
        return problem
    try:
        recurrence.parse_rrule(rule, date(2026, 1, 1))
    except recurrence.Unrepresentable as exc:
        return f"{exc}."
    return ""


def _recurrence_explained(rule: str) -> str:
    """Why Exchange cannot represent this RRULE, in words, for the common cases.

    Exchange knows daily, weekly (days of the week), monthly and yearly patterns (a day of the
    month, or the first…fourth or last weekday), ending never, on a date or after a count.
    """
    try:
        recurrence.check_syntax(rule)
        parts = dict(part.split("=", 1) for part in rule.upper().split(";") if part)
    except (ValueError, TypeError) as exc:
        return f"Not a valid RFC 5545 RRULE: {exc}"
    freq = parts.get("FREQ")
    unsupported = sorted(
        {"BYHOUR", "BYMINUTE", "BYSECOND", "BYYEARDAY", "BYWEEKNO", "BYEASTER"} & parts.keys()
    )
    if freq not in {"DAILY", "WEEKLY", "MONTHLY", "YEARLY"}:
        return f"Exchange cannot repeat an event {str(freq).lower()}: use DAILY, WEEKLY, MONTHLY or YEARLY."
    if unsupported:
        return f"Exchange cannot represent {', '.join(unsupported)} in a recurrence."
    days = [d for d in parts.get("BYDAY", "").split(",") if d]
    plain_days = all(d in _WEEKDAYS for d in days)
    month_days = [d for d in parts.get("BYMONTHDAY", "").split(",") if d]
    months = [m for m in parts.get("BYMONTH", "").split(",") if m]
    setpos = [p for p in parts.get("BYSETPOS", "").split(",") if p]
    if freq in {"DAILY", "WEEKLY"}:
        if month_days or months or setpos or not plain_days:
            return "Exchange repeats daily and weekly events only on plain days of the week."
        return ""
    if freq == "YEARLY" and len(months) > 1:
        return "Exchange repeats a yearly event in one month only."
    if freq == "MONTHLY" and months:
        return "Exchange cannot limit a monthly event to some months."
    if month_days and days:
        return "Exchange repeats on a day of the month or on a weekday, not both."
    if len(month_days) > 1 or any(d not in {str(n) for n in range(1, 32)} | {"-1"} for d in month_days):
        return "Exchange repeats on one day of the month (1–31 or the last)."
    if days:
        return _weekday_problem(days, setpos)
    if setpos:
        return "BYSETPOS needs BYDAY for Exchange."
    return ""


def _weekday_problem(days: list[str], setpos: list[str]) -> str:
    ordinals = {"1", "2", "3", "4", "-1"}
    if setpos:
        if len(setpos) > 1 or setpos[0] not in ordinals or not all(d in _WEEKDAYS for d in days):
            return "Exchange repeats on the first, second, third, fourth or last of some weekdays only."
        return ""
    if len(days) != 1 or days[0][-2:] not in _WEEKDAYS or days[0][:-2] not in ordinals:
        return "Exchange repeats monthly or yearly on one weekday with its position (e.g. 2TU, -1FR)."
    return ""


# --- error names ------------------------------------------------------------------------------------

_API_NAMES = {
    "contacts": {
        "email1": "emails",
        "email2": "emails",
        "email3": "emails",
        "company": "company_external_id",
        "rep": "rep_email",
    },
    "activities": {
        "recurrence_exdates": "exdates",
        "recurrence_exceptions": "exceptions",
        "organizer": "organizer_email",
    },
}


def api_errors(entity: str, exc: ValidationError) -> Errors:
    """Model validation messages under the API's field names."""
    names = _API_NAMES.get(entity, {})
    errors: Errors = {}
    for key, messages in exc.message_dict.items():
        name = "non_field_errors" if key == "__all__" else names.get(key, key)
        errors.setdefault(name, []).extend(messages)
    return errors
