"""`DominoFrontEnd` (``sim.domino``): JWT logins, routing, faults and errors of the Domino REST API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from exchange_sim.store import Change, StoreError

if TYPE_CHECKING:
    from exchange_sim.server import EwsRequestHandler
    from exchange_sim.simulator import Simulator

DOMINO_PREFIX = "/api"
AUTH_PATH = "/v1/auth"
PIM_PREFIX = "/pim-v1"


class DominoError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _Dropped(Exception):
    pass


class DominoRequest:
    def __init__(self, front: DominoFrontEnd, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        self.front = front
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self.user: Any = None
        self.mailbox = ""
        self.params: dict[str, str] = {}

    @property
    def store(self) -> Any:
        return self.front.sim.store

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError:
            raise DominoError(400, "The request body is not JSON.") from None
        if not isinstance(data, dict):
            raise DominoError(400, "The request body must be a JSON object.")
        return data

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in {"true", "1", "yes"}


class DominoFrontEnd:
    def __init__(self, simulator: Simulator) -> None:
        self.sim = simulator
        self.token_seconds = 21600
        self._secret = secrets.token_bytes(32)
        self._generation = 0
        self._lock = threading.Lock()
        # The server's "updated" stamp per item: later than the previous one on every write.
        self._stamps: dict[str, datetime] = {}
        simulator.store.add_listener(self._on_change)

    # ---- knobs ------------------------------------------------------------------------------------------
    def expire_tokens(self) -> None:
        with self._lock:
            self._generation += 1

    @property
    def url(self) -> str:
        return f"{self.sim.base_url}{DOMINO_PREFIX}"

    # ---- change stamps ----------------------------------------------------------------------------------
    def _on_change(self, change: Change) -> None:
        if change.is_folder or change.op == "deleted":
            return
        now = self.sim.clock.now()
        with self._lock:
            last = self._stamps.get(change.id)
            if last is not None and now <= last:
                now = last + timedelta(milliseconds=1)
            self._stamps[change.id] = now

    def updated(self, item: Any) -> datetime:
        with self._lock:
            return self._stamps.get(item.id) or item.modified or self.sim.clock.now()

    # ---- JWT ----------------------------------------------------------------------------------------------
    def issue(self, username: str) -> dict[str, Any]:
        now = self.sim.clock.now()
        claims = {
            "iss": "exchange_sim Domino",
            "sub": f"CN={username}",
            "scope": "MAIL $DATA",
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + self.token_seconds,
            "gen": self._generation,
            "user": username,
        }
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims).encode())
        signature = _b64(hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return {
            "bearer": f"{header}.{payload}.{signature}",
            "claims": claims,
            "leeway": 5,
            "expSeconds": self.token_seconds,
            "issueDate": now.isoformat(timespec="seconds"),
        }

    def verify(self, authorization: str) -> str:
        """The user name of a valid bearer token; DominoError 401 otherwise."""
        if not authorization.lower().startswith("bearer "):
            raise DominoError(401, "Authentication required (Authorization: Bearer JWT).")
        token = authorization[7:].strip()
        try:
            header, payload, signature = token.split(".")
            expected = _b64(hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(expected, signature):
                raise ValueError
            claims = json.loads(_unb64(payload))
        except ValueError:
            raise DominoError(401, "The JWT is not valid.") from None
        if claims.get("gen") != self._generation or claims.get("exp", 0) <= self.sim.clock.now().timestamp():
            raise DominoError(401, "The JWT has expired.")
        return str(claims["user"])

    # ---- serving ------------------------------------------------------------------------------------------
    def handle(self, handler: EwsRequestHandler, method: str, body: bytes) -> None:
        from exchange_sim.domino import routes

        parts = urlsplit(handler.path)
        path = unquote(parts.path)[len(DOMINO_PREFIX) :]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        request = DominoRequest(self, method, path, query, body)
        found = routes.match(method, path)
        if found is None:
            self._send(handler, 404, {"status": 404, "message": f"No such resource: {method} {path}"})
            return
        route, params = found
        request.params = params
        try:
            status, data, headers = self._run(handler, request, route)
        except _Dropped:
            handler.drop()
            return
        except DominoError as exc:
            status, data, headers = exc.status, {"status": exc.status, "message": exc.message}, exc.headers
        self._send(handler, status, data, headers)

    def _run(self, handler: EwsRequestHandler, request: DominoRequest, route: Any) -> tuple[int, Any, dict[str, str]]:
        sim = self.sim
        operation = route.operation
        request.mailbox = request.query.get("mailboxid", "")
        counted_mailbox = request.mailbox or None
        faults = sim.faults
        if faults.take("drop_connection", operation):
            sim.counters.count(operation, counted_mailbox)
            raise _Dropped
        if faults.take("unauthorized", operation):
            sim.counters.count(operation, counted_mailbox)
            raise DominoError(401, "The system doesn't recognize you, please try with new credentials")
        fault = faults.take("http_503", operation) or faults.take("server_busy", operation, counted_mailbox)
        if fault:
            sim.counters.count(operation, counted_mailbox)
            retry = fault.params.get("retry_after") or (fault.params.get("back_off_ms") or 0) // 1000
            raise DominoError(503, "Server busy, try again later", {"Retry-After": str(retry)} if retry else {})
        throttled = faults.take("throttled", operation, counted_mailbox)
        if throttled:
            sim.counters.count(operation, counted_mailbox)
            raise DominoError(429, "Too many requests", {"Retry-After": str(throttled.params.get("retry_after", 1))})
        if sim.faults.latency_ms:
            time.sleep(sim.faults.latency_ms / 1000)
        if route.anonymous:
            sim.counters.count(operation, counted_mailbox)
            return route.handler(request)
        user_name = self.verify(handler.headers.get("Authorization", ""))
        account = sim.auth.lookup(user_name)
        if account is None:
            raise DominoError(401, "The account no longer exists.")
        request.user = account
        if not request.mailbox:
            request.mailbox = account.mailbox or ""
        sim.counters.count(operation, request.mailbox or None)
        if not request.mailbox or not sim.store.has_mailbox(request.mailbox):
            raise DominoError(404, f"No mail file for '{request.mailbox}'.")
        if not account.service_account and (account.mailbox or "").lower() != request.mailbox.lower():
            raise DominoError(403, "Nice try chap, ask before next time: no delegation to this mail file.")
        request.mailbox = sim.store.live_mailbox(request.mailbox).address
        try:
            with sim.store.lock:
                return route.handler(request)
        except StoreError as exc:
            status = 404 if exc.code == "ErrorItemNotFound" else 400
            raise DominoError(status, exc.message or exc.code) from None

    @staticmethod
    def _send(handler: EwsRequestHandler, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode() if data is not None else b""
        handler.send_bytes(status, body, "application/json", headers)

    # ---- control API (/_sim/domino/...) -----------------------------------------------------------------
    def control(self, method: str, parts: list[str], data: dict[str, Any]) -> tuple[int, Any]:
        head = parts[0] if parts else ""
        if head == "" and method == "GET":
            return 200, {"domino_endpoint": self.url, "token_seconds": self.token_seconds}
        if head == "expire_tokens" and method == "POST":
            self.expire_tokens()
            return 200, {"expired": True}
        if head == "token_seconds" and method == "POST":
            self.token_seconds = int(data["seconds"])
            return 200, {"token_seconds": self.token_seconds}
        return 404, {"error": "not found"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
