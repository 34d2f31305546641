"""Change-notification subscriptions (webhooks) — filled in later."""

from __future__ import annotations

from typing import Any


class Webhooks:
    def __init__(self, front: Any) -> None:
        self.front = front

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def control(self, method: str, parts: list[str], data: dict[str, Any]) -> tuple[int, Any]:
        return 404, {"error": "not found"}
