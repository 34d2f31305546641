"""A settable clock shared by the store, the EWS layer and (through /_sim/clock) the product under test.

Tests move time to cross a DST change or slide a calendar window without sleeping.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class Clock:
    """Real UTC time plus an offset, or a frozen instant."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return datetime.now(UTC) + self._offset

    def set(self, when: datetime, *, frozen: bool = False) -> None:
        """Jump to `when` (aware; naive means UTC). Frozen: stays there until moved again."""
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        with self._lock:
            if frozen:
                self._frozen = when.astimezone(UTC)
            else:
                self._frozen = None
                self._offset = when - datetime.now(UTC)

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            if self._frozen is not None:
                self._frozen += delta
            else:
                self._offset += delta

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta(0)
            self._frozen = None

    def describe(self) -> dict[str, object]:
        return {"now": self.now().isoformat(), "frozen": self._frozen is not None}
