"""Delta tokens (filled in with the contacts and calendar delta queries)."""

from __future__ import annotations

from typing import Any


class DeltaTokens:
    def __init__(self, front: Any) -> None:
        self.front = front

    def invalidate(self) -> None:
        pass
