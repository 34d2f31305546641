"""Time zones as Graph takes them: Windows names (``W. Europe Standard Time``) or IANA names.

The Windows <-> IANA tables are exchangelib's (from CLDR), not our own. The store keeps a Windows id where
the calendar layer knows it, else the IANA name (which the calendar layer accepts as well).
"""

from __future__ import annotations

import functools
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchangelib.winzone import IANA_TO_MS_TIMEZONE_MAP, MS_TIMEZONE_TO_IANA_MAP

from exchange_sim.calendar import WINDOWS_TO_IANA, zone_for
from exchange_sim.graph.errors import GraphError

UTC_NAMES = {"utc", "etc/utc", "tzone://microsoft/utc", "gmt"}


def not_supported(name: object) -> GraphError:
    return GraphError(
        400,
        "TimeZoneNotSupportedException",
        f"A valid TimeZone value must be specified. The following TimeZone value is not supported: '{name}'.",
    )


def iana_for(name: str | None) -> str:
    """The IANA zone of a Graph time zone name; 400 TimeZoneNotSupportedException when unknown."""
    if not isinstance(name, str) or not name.strip():
        raise not_supported(name)
    text = name.strip()
    if text.lower() in UTC_NAMES:
        return "UTC"
    if text in MS_TIMEZONE_TO_IANA_MAP:
        return MS_TIMEZONE_TO_IANA_MAP[text]
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise not_supported(name) from None
    return text


def zone(name: str | None) -> ZoneInfo:
    if isinstance(name, str):
        return _zone(name)
    return ZoneInfo(iana_for(name))


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    # every start and end answered names its zone: look the name up once (an unknown one raises, uncached)
    return ZoneInfo(iana_for(name))


def store_zone_id(name: str) -> str:
    """What goes into StartTimeZone: the Windows id when the calendar layer can expand it, else IANA."""
    iana = iana_for(name)
    windows = windows_name(iana)
    if windows in WINDOWS_TO_IANA and zone_for(windows).key == ZoneInfo(iana).key:
        return windows
    return "UTC" if iana == "UTC" else iana


def windows_name(stored: str | None) -> str:
    """A Windows time zone name for originalStartTimeZone (what Graph reports)."""
    if not stored:
        return "UTC"
    if stored in MS_TIMEZONE_TO_IANA_MAP or stored == "UTC":
        return stored
    found = IANA_TO_MS_TIMEZONE_MAP.get(stored)
    return found[0] if found else stored


def to_utc(local: datetime, zone_name: str) -> datetime:
    return local.replace(tzinfo=zone(zone_name)).astimezone(ZoneInfo("UTC"))
