"""The wire to the HCL Domino REST API: httpx, a JWT per (server, account), retries, errors.

Authentication: ``POST {base}/v1/auth`` with the service account's name and password answers a
bearer JWT and its lifetime (``expSeconds``). The token is kept per process and renewed a minute
before it expires; a 401 on a request renews it once (a burst: the server restarted, or the token
was revoked) — a 401 again, or a refused login, is ``AuthenticationFailed`` (permanent).
Throttling and a busy server (429, 503) are retried after their Retry-After within
``max_wait_s``, then reported as ``Throttled`` (transient). A dropped connection is retried for
reads and for writes that are safe to repeat (PUT, DELETE); a create (POST) is not repeated — the
sync id it carries lets the next pass adopt it if it was made.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from time import monotonic, sleep
from typing import Any

import httpx

from synccore.mailbox import base
from synccore.mailbox.base import ConnectionConfig

RENEW_BEFORE_S = 60.0
ATTEMPTS = 3


@dataclass
class _Token:
    bearer: str
    expires_at: float  # monotonic()


_tokens: dict[tuple[str, str], _Token] = {}
_tokens_lock = threading.Lock()


def forget_process_state() -> None:
    """Drop the JWTs kept for this process (tests start without them)."""
    with _tokens_lock:
        _tokens.clear()


class DominoClient:
    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self.base = (config.domino_url or "").rstrip("/")
        if not self.base:
            raise base.PermanentMailboxError("No Domino REST API URL is set.", code="NoDominoUrl")
        verify: Any = config.ca_bundle or True
        self.http = httpx.Client(verify=verify, timeout=config.timeout_s)
        self.requests = 0
        self._key = (self.base, config.username.lower())

    def close(self) -> None:
        self.http.close()

    # --- Authentication -----------------------------------------------------------------------

    def token(self, *, renew: bool = False) -> str:
        with _tokens_lock:
            held = _tokens.get(self._key)
        if held is not None and not renew and held.expires_at - RENEW_BEFORE_S > monotonic():
            return held.bearer
        answer = self._send(
            "POST", "/v1/auth", json={"username": self.config.username, "password": self.config.password}
        )
        if answer.status_code in (400, 401, 403):
            raise base.AuthenticationFailed(
                f"Domino refused the login of {self.config.username} ({answer.status_code}: {_message(answer)}).",
                code="DominoLoginRefused",
            )
        self._raise_for(answer, "")
        data = answer.json()
        bearer = str(data.get("bearer") or "")
        if not bearer:
            raise base.TransientMailboxError(
                "Domino answered a login without a bearer token.", code="NoBearer"
            )
        lifetime = float(data.get("expSeconds") or 3600)
        fresh = _Token(bearer, monotonic() + lifetime)
        with _tokens_lock:
            _tokens[self._key] = fresh
        return bearer

    # --- Requests -----------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        mailbox: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        not_found: type[base.MailboxError] = base.ItemNotFound,
    ) -> Any:
        """One PIM request for a mailbox (``mailboxid``); the JSON answer, or a MailboxError."""
        query = {"mailboxid": mailbox, **(params or {})}
        renewed = False
        waited = 0.0
        for attempt in range(1, ATTEMPTS + 1):
            headers = {"Authorization": f"Bearer {self.token()}"}
            try:
                answer = self._send(method, path, params=query, json=json, headers=headers)
            except base.TransientMailboxError:
                if method == "POST" or attempt == ATTEMPTS:
                    raise
                continue
            if answer.status_code == 401 and not renewed:
                renewed = True
                self.token(renew=True)
                continue
            if answer.status_code in (429, 502, 503, 504) and attempt < ATTEMPTS:
                wait = _retry_after(answer)
                if waited + wait <= self.config.max_wait_s:
                    waited += wait
                    sleep(wait)
                    continue
            self._raise_for(answer, mailbox, not_found)
            return answer.json() if answer.content else None
        raise base.TransientMailboxError(f"Domino did not answer {method} {path} for {mailbox}.")

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self.requests += 1
        try:
            return self.http.request(method, f"{self.base}{path}", **kwargs)
        except httpx.TimeoutException as exc:
            raise base.TransientMailboxError(
                f"Domino at {self.base} did not answer in time ({exc}).", code="Timeout"
            ) from exc
        except httpx.TransportError as exc:
            raise base.TransientMailboxError(
                f"Domino at {self.base} could not be reached ({exc}).", code="Transport"
            ) from exc

    def _raise_for(
        self, answer: httpx.Response, mailbox: str, not_found: type[base.MailboxError] = base.ItemNotFound
    ) -> None:
        status = answer.status_code
        if status < 400:
            return
        text = f"Domino answered {status} for {mailbox or 'the login'}: {_message(answer)}"
        if status == 401:
            raise base.AuthenticationFailed(text, code="Unauthorized")
        if status == 403:
            raise base.AccessDenied(text, code="Forbidden")
        if status == 404:
            raise not_found(text, code="NotFound")
        if status in (429, 503):
            raise base.Throttled(text, retry_after=_retry_after(answer), code=str(status))
        if status in (400, 406, 415, 422, 501):
            raise base.InvalidItem(text, code=str(status))
        raise base.TransientMailboxError(
            text, retry_after=_retry_after(answer) if status >= 500 else None, code=str(status)
        )


def _retry_after(answer: httpx.Response) -> float:
    try:
        return max(float(answer.headers.get("Retry-After", "1")), 0.0)
    except ValueError:
        return 1.0


def _message(answer: httpx.Response) -> str:
    try:
        data = answer.json()
    except ValueError:
        return answer.text[:200] or answer.reason_phrase
    if isinstance(data, dict):
        return str(data.get("message") or data.get("details") or data)[:300]
    return str(data)[:300]
