"""Fault switches, request counters and the request log.

Faults are armed for a number of requests (``times=None`` or ``0`` means until cleared, in the
Python API, the control API and the CLI alike), optionally only for
one operation or one mailbox, and can be flipped while the server runs.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# kind -> what a real server does (and the exchangelib exception that results)
FAULT_KINDS = {
    "server_busy": "SOAP fault ErrorServerBusy with BackOffMilliseconds -> ErrorServerBusy",
    "http_503": "HTTP 503 Service Unavailable -> TransportError (or retried by a patient retry policy)",
    "unauthorized": "HTTP 401 although credentials are right -> UnauthorizedError",
    "drop_connection": "the TCP connection is closed without an answer -> TransportError/ConnectionError",
    "invalid_sync_state": "SyncFolderItems answers ErrorInvalidSyncStateData -> ErrorInvalidSyncStateData",
    "mailbox_move": "ErrorMailboxMoveInProgress in the response message -> ErrorMailboxMoveInProgress",
    "exceeded_connections": "ErrorExceededConnectionCount SOAP fault -> ErrorExceededConnectionCount",
    "throttled": "Graph only: HTTP 429 ApplicationThrottled with Retry-After (EWS ignores it)",
}


@dataclass
class Fault:
    kind: str
    times: int | None = 1
    operation: str | None = None
    mailbox: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def matches(self, kind: str, operation: str | None, mailbox: str | None, exact: bool = False) -> bool:
        if self.kind != kind:
            return False
        if exact and self.operation != operation:
            return False
        if self.operation and operation and self.operation != operation:
            return False
        if self.operation and not operation:
            return False
        return not (self.mailbox and (not mailbox or mailbox.lower() != self.mailbox.lower()))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "times": self.times, "operation": self.operation, "mailbox": self.mailbox, **self.params}


class Faults:
    """Thread-safe fault switches.

    >>> sim.faults.server_busy(times=2, back_off_ms=500, operation="CreateItem")
    >>> sim.faults.latency_ms = 20
    >>> sim.faults.max_connections_per_account = 2
    >>> sim.faults.budget(requests=50, per_seconds=60)   # EWS throttling: ErrorServerBusy beyond it
    >>> sim.faults.clear()
    """

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self._lock = threading.Lock()
        self._armed: list[Fault] = []
        self.latency_ms = 0
        self.max_connections_per_account: int | None = None
        self._now = now or (lambda: datetime.now(UTC))
        self._budget: tuple[int, float] | None = None
        self._spent: dict[str, deque[datetime]] = {}

    def budget(self, requests: int | None, per_seconds: float = 60.0) -> None:
        """A throttling budget per account, counted on the simulator clock (None lifts it).

        Like Exchange's throttling policy, a request beyond the budget gets ErrorServerBusy with a
        BackOffMilliseconds of the time until the oldest request leaves the window.
        """
        with self._lock:
            self._budget = (requests, per_seconds) if requests is not None else None
            self._spent.clear()

    def spend(self, account: str) -> int | None:
        """Record one request; the back-off in ms when the account is over its budget, else None."""
        with self._lock:
            if self._budget is None:
                return None
            limit, seconds = self._budget
            now = self._now()
            window = timedelta(seconds=seconds)
            spent = self._spent.setdefault(account.lower(), deque())
            while spent and now - spent[0] >= window:
                spent.popleft()
            if len(spent) >= limit:
                return max(int((spent[0] + window - now).total_seconds() * 1000), 1)
            spent.append(now)
            return None

    def arm(self, kind: str, times: int | None = 1, operation: str | None = None, mailbox: str | None = None, **params: Any) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault {kind}; known: {', '.join(FAULT_KINDS)}")
        if times is not None and times < 0:
            raise ValueError(f"times must be 0 (until cleared) or more, not {times}")
        times = times or None  # 0: until cleared, as the CLI's --fault KIND:0 has always meant
        fault = Fault(kind=kind, times=times, operation=operation, mailbox=mailbox, params=params)
        with self._lock:
            self._armed.append(fault)
        return fault

    def server_busy(self, times: int | None = 1, back_off_ms: int = 1000, operation: str | None = None, mailbox: str | None = None) -> Fault:
        return self.arm("server_busy", times, operation, mailbox, back_off_ms=back_off_ms)

    def http_503(self, times: int | None = 1, operation: str | None = None, retry_after: int | None = None) -> Fault:
        return self.arm("http_503", times, operation, retry_after=retry_after)

    def unauthorized(self, times: int | None = 1, operation: str | None = None) -> Fault:
        return self.arm("unauthorized", times, operation)

    def drop_connection(self, times: int | None = 1, operation: str | None = None) -> Fault:
        return self.arm("drop_connection", times, operation)

    def invalid_sync_state(self, times: int | None = 1, mailbox: str | None = None) -> Fault:
        return self.arm("invalid_sync_state", times, "SyncFolderItems", mailbox)

    def mailbox_move(self, mailbox: str | None = None, times: int | None = 1, operation: str | None = None) -> Fault:
        return self.arm("mailbox_move", times, operation, mailbox)

    def throttled(self, times: int | None = 1, retry_after: int = 1, operation: str | None = None, mailbox: str | None = None) -> Fault:
        """Graph answers 429 ApplicationThrottled with this Retry-After (seconds)."""
        return self.arm("throttled", times, operation, mailbox, retry_after=retry_after)

    def take(self, kind: str, operation: str | None = None, mailbox: str | None = None, *, exact: bool = False) -> Fault | None:
        """Consume one shot of an armed fault of this kind matching the request, if any.

        ``exact``: only a fault armed for exactly this operation (Graph's token endpoint and $batch
        sub-requests are not hit by faults armed for "any request")."""
        with self._lock:
            for fault in self._armed:
                if fault.matches(kind, operation, mailbox, exact):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._armed.remove(fault)
                    return fault
        return None

    def clear(self, kind: str | None = None) -> None:
        with self._lock:
            self._armed = [f for f in self._armed if kind is not None and f.kind != kind]
            if kind is None:
                self.latency_ms = 0
                self.max_connections_per_account = None
                self._budget = None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "latency_ms": self.latency_ms,
                "max_connections_per_account": self.max_connections_per_account,
                "budget": {"requests": self._budget[0], "per_seconds": self._budget[1]} if self._budget else None,
                "armed": [f.describe() for f in self._armed],
                "kinds": FAULT_KINDS,
            }


GRAPH_PREFIX = "graph."


DOMINO_PREFIX = "domino."


def _protocol_of(operation: str) -> str:
    if operation.startswith(DOMINO_PREFIX):
        return "domino"
    return "graph" if operation.startswith(GRAPH_PREFIX) else "ews"


class Counters:
    """Requests per operation (and per mailbox), counted as they arrive.

    EWS operations are counted by name (``CreateItem``); Graph requests as ``graph.<resource>.<action>``
    (``graph.contacts.create``, ``graph.$batch``, ``graph.token``). A ``$batch`` is one request, counted
    once for each mailbox its sub-requests address; its sub-requests are counted apart.

    >>> sim.counters["CreateItem"]      # 0 when never called
    >>> sim.counters.total(); sim.counters.total(protocol="graph")
    >>> sim.counters.for_mailbox("alice@contoso.example", protocol="graph")
    >>> sim.counters.sub_requests("graph.contacts.create")
    >>> sim.counters.reset()
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_op: Counter[str] = Counter()
        self._by_mailbox: Counter[tuple[str, str]] = Counter()
        self._sub: Counter[tuple[str, str]] = Counter()

    connections = 0  # TCP connections accepted (keep-alive keeps this low)

    def connection_opened(self) -> None:
        with self._lock:
            self.connections += 1

    def count(self, operation: str, mailbox: str | None = None) -> None:
        with self._lock:
            self._by_op[operation] += 1
            if mailbox:
                self._by_mailbox[(mailbox.lower(), operation)] += 1

    def count_request(self, operation: str, mailboxes: Iterable[str]) -> None:
        """One request that touched several mailboxes (a Graph $batch): once in total, once per mailbox."""
        with self._lock:
            self._by_op[operation] += 1
            for mailbox in {m.lower() for m in mailboxes if m}:
                self._by_mailbox[(mailbox, operation)] += 1

    def count_sub_request(self, operation: str, mailbox: str | None) -> None:
        with self._lock:
            self._sub[((mailbox or "").lower(), operation)] += 1

    def __getitem__(self, operation: str) -> int:
        with self._lock:
            return self._by_op[operation]

    def for_mailbox(self, mailbox: str, operation: str | None = None, protocol: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (mb, op), n in self._by_mailbox.items()
                if mb == mailbox.lower() and operation in (None, op) and protocol in (None, _protocol_of(op))
            )

    def total(self, protocol: str | None = None) -> int:
        with self._lock:
            return sum(n for op, n in self._by_op.items() if protocol in (None, _protocol_of(op)))

    def sub_requests(self, operation: str | None = None, mailbox: str | None = None) -> int:
        """Graph $batch sub-requests, by operation and/or mailbox."""
        with self._lock:
            return sum(
                n
                for (mb, op), n in self._sub.items()
                if operation in (None, op) and (mailbox is None or mb == mailbox.lower())
            )

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_op)

    def reset(self) -> None:
        with self._lock:
            self._by_op.clear()
            self._by_mailbox.clear()
            self._sub.clear()
            self.connections = 0


@dataclass
class LoggedRequest:
    operation: str
    mailbox: str | None
    status: int
    request: str
    response: str
    protocol: str = "ews"


class RequestLog:
    """Optional log of requests and responses (off by default; it holds whole messages)."""

    def __init__(self, limit: int = 1000) -> None:
        self._lock = threading.Lock()
        self.enabled = False
        self.limit = limit
        self._entries: list[LoggedRequest] = []

    def add(self, entry: LoggedRequest) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._entries.append(entry)
            del self._entries[: -self.limit]

    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
