"""Graph throttling per app and mailbox, as Outlook resources do it (off by default).

    sim.graph.throttling.concurrency = 4                 # more requests at once -> 429 (MailboxConcurrency)
    sim.graph.throttling.budget(requests=100, per_seconds=600)   # a request budget per window, simulator clock
    sim.faults.throttled(times=2, retry_after=3)         # force 429s (optionally per operation / mailbox)

A throttled request answers ``429 Too Many Requests`` with ``Retry-After`` (seconds) and
``{"error": {"code": "ApplicationThrottled", ...}}``; in a $batch each sub-request is throttled on its own.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from exchange_sim.graph.errors import GraphError


def throttled(message: str, retry_after: float) -> GraphError:
    seconds = max(1, math.ceil(retry_after))
    return GraphError(429, "ApplicationThrottled", message, {"Retry-After": str(seconds)})


class Throttling:
    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now
        self._lock = threading.Lock()
        self.concurrency: int | None = None  # Outlook's MailboxConcurrency is 4
        self.retry_after = 1  # seconds suggested when over the concurrency limit
        self._budget: tuple[int, float] | None = None
        self._spent: dict[tuple[str, str], deque[datetime]] = {}
        self._in_flight: dict[tuple[str, str], int] = {}

    def budget(self, requests: int | None, per_seconds: float = 600.0) -> None:
        """At most `requests` per app and mailbox in a sliding window (None lifts it)."""
        with self._lock:
            self._budget = (requests, per_seconds) if requests is not None else None
            self._spent.clear()

    def clear(self) -> None:
        self.concurrency = None
        self.budget(None)

    def enter(self, app: str, mailbox: str) -> None:
        """Take a slot for one request, or raise the 429 Graph would answer."""
        key = (app, mailbox.lower())
        with self._lock:
            if self._budget is not None:
                limit, seconds = self._budget
                now, window = self._now(), timedelta(seconds=seconds)
                spent = self._spent.setdefault(key, deque())
                while spent and now - spent[0] >= window:
                    spent.popleft()
                if len(spent) >= limit:
                    wait = (spent[0] + window - now).total_seconds()
                    raise throttled("Application is over its MailboxRequestCount limit.", wait)
                spent.append(now)
            current = self._in_flight.get(key, 0)
            if self.concurrency is not None and current >= self.concurrency:
                raise throttled("Application is over its MailboxConcurrency limit.", self.retry_after)
            self._in_flight[key] = current + 1

    def leave(self, app: str, mailbox: str) -> None:
        key = (app, mailbox.lower())
        with self._lock:
            self._in_flight[key] = max(0, self._in_flight.get(key, 1) - 1)

    def describe(self) -> dict[str, object]:
        with self._lock:
            budget = {"requests": self._budget[0], "per_seconds": self._budget[1]} if self._budget else None
            return {"concurrency": self.concurrency, "retry_after": self.retry_after, "budget": budget}
