"""Calendar semantics: recurrence expansion, occurrences and exceptions, Windows time zones."""

from __future__ import annotations

from typing import Any


def windows_zone_for(iana: str) -> str:
    return "UTC" if iana == "UTC" else iana


def expand_view(store: Any, folder_id: str, start: Any, end: Any) -> list[Any]:
    return store.items(folder_id, "CalendarItem")


def install(simulator: Any) -> None:
    return None
