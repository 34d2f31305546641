"""Date/time formats Graph uses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from exchange_sim.graph.errors import GraphError


def utc_text(when: datetime | None) -> str | None:
    """createdDateTime & co.: ``2027-03-28T10:00:00Z``."""
    if when is None:
        return None
    utc = when if when.tzinfo is UTC else when.astimezone(UTC)  # the store's times are UTC already
    if utc.year < 1000:  # strftime does not pad such a year, isoformat does: keep strftime's text
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    # the date and the time to the second, isoformat's first 19 characters: strftime is several times
    # slower, and so is a replace() of the fraction and the zone
    return utc.isoformat()[:19] + "Z"


def local_text(when: datetime) -> str:
    """dateTimeTimeZone.dateTime: wall clock time with seven fraction digits, no offset (an aware
    `when` is read on its own wall clock)."""
    if when.year < 1000:  # strftime does not pad such a year, isoformat does: keep strftime's text
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}0"
    return when.isoformat()[:19] + f".{when.microsecond:06d}0"  # (see utc_text)


def parse_datetime(value: Any, name: str) -> datetime:
    """An ISO 8601 instant; without an offset it is UTC."""
    if not isinstance(value, str):
        raise GraphError(400, "RequestBodyRead", f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset' ({name}).")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise GraphError(400, "RequestBodyRead", f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset' ({name}).") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
