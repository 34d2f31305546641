"""The wire to Microsoft Graph v1.0: tokens, throttling, transport retries and ``$batch``.

Choices that matter (see docs/exchange-online.md):
- app-only tokens from msal (client credentials) with one token cache per process and app, so a
  pass in a warm worker costs no token request; a 401 drops the cached token and retries once
  with a fresh one; a burst of 401s (three within 30 s) is a credentials error, as over EWS;
- one pooled httpx client per backend (keep-alive; HTTP/1.1: ``$batch`` already multiplexes);
- every write goes through ``$batch``, at most 20 requests each, up to 4 of them at once (Graph's
  MailboxConcurrency; a process-wide slot per app and mailbox keeps every request of the process
  within it); throttled sub-requests are retried on their own after their ``Retry-After``;
- ``Retry-After`` is honoured per app and mailbox, process-wide: a mailbox that was told to wait
  is not asked again before its time, by any pass; a wait longer than the configured maximum
  raises ``Throttled`` with the server's figure, and the engine backs off;
- ids follow ``Prefer: IdType="ImmutableId"`` (a contact's id does not change when it moves);
- every request on the wire is counted in ``requests`` (a ``$batch`` is one request; token
  requests to the authority count too).

Nothing here knows contacts or events: the backend operations build the calls.
"""

from __future__ import annotations

import email.utils
import hashlib
import ssl
import threading
import time as clock
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import msal
import requests
import requests.adapters

from synccore.mailbox import base
from synccore.mailbox.base import ConnectionConfig, MailboxError
from synccore.mailbox.counting import RequestCounter

DEFAULT_ENDPOINT = "https://graph.microsoft.com/v1.0"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
BATCH_LIMIT = 20  # Graph's limit of requests per $batch
CONCURRENCY = 4  # Graph's MailboxConcurrency: requests in flight per app and mailbox
PAGE_SIZE = 1000  # $top of lists (Graph's largest)
DELTA_PAGE_SIZE = 200  # odata.maxpagesize of delta rounds: Exchange Online serves at most 200

IMMUTABLE_IDS = 'IdType="ImmutableId"'
UNAUTHORIZED_LIMIT = 3
UNAUTHORIZED_WINDOW_S = 30.0
TRANSPORT_RETRIES = 3
MAILBOX_NOT_FOUND_CODES = frozenset(
    {"ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "ErrorNonExistentMailbox", "MailboxNotFound"}
)
SYNC_STATE_CODES = frozenset({"SyncStateNotFound", "SyncStateInvalid", "ResyncRequired", "InvalidSyncToken"})
THROTTLE_STATUSES = frozenset({429, 503, 504, 509})


# --- Request counting (token requests go through requests; Graph requests through httpx) -----

_token_requests = RequestCounter()
_token_requests_sent = _token_requests.sent
_CountingAdapter = _token_requests.adapter_class()


class _TokenSession(requests.Session):
    """msal's HTTP client: our CA bundle, a timeout on every request, requests counted."""

    def __init__(self, verify: str | bool, timeout: float) -> None:
        super().__init__()
        self.verify = verify
        self._timeout = timeout
        adapter = _CountingAdapter()
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", self._timeout)
        # Explicitly: requests would otherwise prefer REQUESTS_CA_BUNDLE from the environment.
        kwargs.setdefault("verify", self.verify)
        return super().request(*args, **kwargs)


# --- Tokens: one msal application (and token cache) per process and app -------------------

_apps: dict[tuple[str, str, str, str], msal.ConfidentialClientApplication] = {}
_apps_lock = threading.Lock()
# One token request at a time per application: passes at once in a cold worker would otherwise
# each miss the empty cache and ask for a token of their own (id of the application: its lock).
_token_locks: dict[int, threading.Lock] = {}


def _authority_is_microsofts(authority: str) -> bool:
    return (urlsplit(authority).hostname or "") in msal.authority.WELL_KNOWN_AUTHORITY_HOSTS


def _token_app(
    authority: str, config: ConnectionConfig, verify: str | bool
) -> msal.ConfidentialClientApplication:
    """The shared application for these credentials; built (tenant discovery) once per process."""
    secret_hash = hashlib.sha256(config.client_secret.encode()).hexdigest()
    key = (authority, config.client_id, secret_hash, str(verify))
    with _apps_lock:
        app = _apps.get(key)
        if app is None:
            microsofts = _authority_is_microsofts(authority)
            app = msal.ConfidentialClientApplication(
                config.client_id,
                client_credential=config.client_secret,
                authority=authority,
                # A national cloud is known to msal; a private authority (the simulator, a test
                # tenant behind a proxy) is one the administrator chose: no instance discovery.
                validate_authority=microsofts,
                instance_discovery=False,
                http_client=_TokenSession(verify, config.timeout_s),
                token_cache=msal.TokenCache(),
            )
            _apps[key] = app
        return app


def forget_process_state() -> None:
    """Drop every cached application and token and every Retry-After (tests; a rotated secret
    gets a new cache key anyway)."""
    with _apps_lock:
        _apps.clear()
        _token_locks.clear()
    with _resume_lock:
        _resume_at.clear()


# --- Throttling: Retry-After per app and mailbox, shared by every backend of the process -------

_resume_at: dict[tuple[str, str, str], float] = {}
_resume_lock = threading.Lock()
# Requests in flight per app and mailbox, process-wide: concurrent passes of one mailbox (its
# contacts and its calendar) share Graph's 4 as well.
_slots: dict[tuple[str, str, str], threading.BoundedSemaphore] = {}


def _slot(key: tuple[str, str, str]) -> threading.BoundedSemaphore:
    with _resume_lock:
        slot = _slots.get(key)
        if slot is None:
            slot = _slots[key] = threading.BoundedSemaphore(CONCURRENCY)
        return slot


def _retry_after_seconds(headers: httpx.Headers | dict[str, str], default: float) -> float:
    raw = None
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value
    if raw is None:
        return default
    raw = str(raw).strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass
class _Patience:
    """How long one backend call may still wait for the server (config.max_wait_s in all)."""

    max_wait_s: float
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = monotonic() + self.max_wait_s

    def allows(self, seconds: float) -> bool:
        return monotonic() + seconds <= self.deadline


def sleep(seconds: float) -> None:
    """Waiting for the server (module functions, so tests can see the waits and skip them)."""
    clock.sleep(seconds)


def monotonic() -> float:
    return clock.monotonic()


# --- Errors -----------------------------------------------------------------------------------


def error_parts(body: Any) -> tuple[str, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return "", ""


def translate(status: int, body: Any, *, retry_after: float | None = None) -> MailboxError:
    """One Graph answer that is not a success → the backend error family."""
    code, message = error_parts(body)
    text = f"HTTP {status} {code}: {message}".strip().rstrip(":")
    if status == 401:
        return base.AuthenticationFailed(
            f"Microsoft Graph refused the application's credentials ({text}). Check the client id, "
            "the secret and its expiry, and the admin consent.",
            code=code or "401",
        )
    if status == 403:
        return base.AccessDenied(
            "The application may not open this mailbox; check its application permissions "
            f"(Contacts.ReadWrite, Calendars.ReadWrite), the admin consent and the application "
            f"access policy ({text}).",
            code=code or "403",
        )
    if status == 404 and code in MAILBOX_NOT_FOUND_CODES:
        return base.MailboxNotFound(f"Exchange Online has no such mailbox ({text}).", code=code)
    if status == 404:
        return base.ItemNotFound(text, code=code or "404")
    if status == 410 or code in SYNC_STATE_CODES:
        return base.InvalidSyncToken(text, code=code or "410")
    if status == 412:
        return base.StaleChangeKey(text, code=code or "412")
    if status in THROTTLE_STATUSES:
        return base.Throttled(
            f"Microsoft Graph is throttling this mailbox ({text}).", retry_after=retry_after, code=code
        )
    if status >= 500:
        return base.TransientMailboxError(f"Microsoft Graph is not answering normally ({text}).", code=code)
    if status == 409:
        return base.ItemError(text, code=code or "409")
    return base.InvalidItem(text, code=code or str(status))


def _is_mailbox_wide(error: MailboxError) -> bool:
    """Errors about the mailbox or the app, not about one item: they end the call."""
    return isinstance(error, base.AuthenticationFailed | base.AccessDenied | base.MailboxNotFound)


# --- URLs -------------------------------------------------------------------------------------


def segment(value: str) -> str:
    """One path segment (an id), every reserved character encoded."""
    return quote(value, safe="")


_QUERY_SAFE = "(),'=:@$/"


def odata_query(**params: str | int) -> str:
    """An OData query string: ``$`` names kept, values percent-encoded (spaces as %20)."""
    return "&".join(f"${name}={quote(str(value), safe=_QUERY_SAFE)}" for name, value in params.items())


# --- One request, alone or inside a $batch --------------------------------------------------


@dataclass
class Call:
    method: str
    url: str  # relative to the endpoint ("/users/…"), as $batch wants it
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> MailboxError:
        return translate(self.status, self.body, retry_after=_retry_after_seconds(self.headers, 0) or None)


# --- The client ------------------------------------------------------------------------------

# Microsoft Graph's own hosts (global and national clouds): the token is asked for that resource.
GRAPH_HOSTS = frozenset(
    {"graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"}
)
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's application id, every cloud


def graph_scope(endpoint: str) -> str:
    """The client-credentials scope: the Graph host's resource, or Graph's application id for an
    endpoint behind another name (a proxy, the simulator)."""
    host = urlsplit(endpoint).hostname or ""
    return f"https://{host}/.default" if host in GRAPH_HOSTS else f"{GRAPH_APP_ID}/.default"


def user_path(mailbox: str) -> str:
    """A mailbox's path under the endpoint (``/users/{address}``)."""
    return f"/users/{quote(mailbox, safe='@')}"


def _tls_context(ca_bundle: str) -> ssl.SSLContext | bool:
    """The TLS verification for a CA bundle (the system's CAs without one); a bundle this server
    cannot read is a permanent error of the connection, never an unexpected one."""
    if not ca_bundle:
        return True
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise base.PermanentMailboxError(
            f"The CA bundle {ca_bundle} is not a PEM file of certificates this server can read ({exc})."
        ) from exc


class GraphClient:
    """One backend's connection to Graph: its own httpx pool, its token, its 401s; the msal
    applications and the Retry-After times it shares with the rest of the process."""

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self.endpoint = (config.graph_endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.scope = graph_scope(self.endpoint)
        self.authority = (config.authority_url or f"{DEFAULT_AUTHORITY_HOST}/{config.tenant_id}").rstrip("/")
        self._verify: str | bool = config.ca_bundle or True
        self._http = httpx.Client(
            verify=_tls_context(config.ca_bundle),
            timeout=httpx.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s)),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            headers={"Accept": "application/json"},
            event_hooks={"request": [self._count]},
        )
        self._requests = 0
        self._count_lock = threading.Lock()
        self._token: str = ""
        self._token_lock = threading.RLock()
        self._refusals = 0  # tokens dropped so far: a 401 to an already dropped token is not counted
        self._recent_401s: list[float] = []
        self._pool: ThreadPoolExecutor | None = None

    # Counting ------------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        return self._requests

    def _count(self, request: httpx.Request) -> None:
        with self._count_lock:
            self._requests += 1

    # Tokens ----------------------------------------------------------------------------------

    def _app(self) -> msal.ConfidentialClientApplication:
        if not (self.config.client_id and self.config.client_secret):
            raise base.AuthenticationFailed(
                "No client id or client secret is configured for Microsoft Graph."
            )
        try:
            return _token_app(self.authority, self.config, self._verify)
        except requests.exceptions.SSLError as exc:
            raise self._tls_error(self.authority, exc) from exc
        except requests.RequestException as exc:
            raise base.TransientMailboxError(
                f"The token authority {self.authority} is not answering ({exc})."
            ) from exc
        except ValueError as exc:  # msal: not an authority it can use
            raise base.PermanentMailboxError(
                f"The token authority {self.authority} cannot be used ({exc})."
            ) from exc

    def access_token(self) -> str:
        """An app-only token for Graph, from the process's cache when it is still good."""
        if self._token:
            return self._token
        with self._token_lock:  # the $batch threads of a call fetch one token, not one each
            if self._token:
                return self._token
            return self._fetch_token()

    def _fetch_token(self) -> str:
        before = _token_requests_sent()
        try:
            app = self._app()
            try:
                # The first fetches, the others find its token in the cache.
                with _token_locks.setdefault(id(app), threading.Lock()):
                    result = app.acquire_token_for_client(scopes=[self.scope])
            except requests.exceptions.SSLError as exc:
                raise self._tls_error(self.authority, exc) from exc
            except requests.RequestException as exc:
                raise base.TransientMailboxError(
                    f"The token authority {self.authority} is not answering ({exc})."
                ) from exc
        finally:
            with self._count_lock:
                self._requests += _token_requests_sent() - before
        if "access_token" not in result:
            raise self._token_error(result)
        self._token = result["access_token"]
        return self._token

    def _token_error(self, result: dict[str, Any]) -> MailboxError:
        error = str(result.get("error") or "")
        description = str(result.get("error_description") or "").splitlines()[0:1]
        text = f"{error}: {description[0]}" if description else error
        if error in (
            "invalid_client",
            "unauthorized_client",
            "invalid_grant",
            "invalid_scope",
            "invalid_request",
        ):
            return base.AuthenticationFailed(
                f"The token authority refused the application's credentials ({text}). Check the tenant "
                "id, the client id, the secret and its expiry.",
                code=error,
            )
        if error in ("temporarily_unavailable", "server_error", "slow_down"):
            return base.TransientMailboxError(
                f"The token authority is not answering normally ({text}).", code=error
            )
        return base.PermanentMailboxError(f"No token for Microsoft Graph ({text}).", code=error)

    def drop_token(self) -> None:
        """The server refused our token: forget it here and in the shared cache."""
        self._token = ""
        self._refusals += 1
        try:
            app = _token_app(self.authority, self.config, self._verify)
        except Exception:  # nothing cached when the app cannot even be built
            return
        cache = app.token_cache
        stale = list(
            cache.search(
                msal.TokenCache.CredentialType.ACCESS_TOKEN, query={"client_id": self.config.client_id}
            )
        )
        for entry in stale:
            cache.remove_at(entry)

    def _unauthorized(self, answer: Answer, patience: _Patience, refusals: int) -> None:
        """A 401: drop the token and go on (a fresh one is fetched), unless it is a burst.
        ``refusals`` is the count of dropped tokens when the refused request was sent: a token
        another thread of the call has already dropped is not refused twice."""
        with self._token_lock:
            if refusals != self._refusals:
                return
            self._count_401(answer, patience)

    def _count_401(self, answer: Answer, patience: _Patience) -> None:
        now = monotonic()
        self._recent_401s = [t for t in self._recent_401s if now - t < UNAUTHORIZED_WINDOW_S] + [now]
        self.drop_token()
        if len(self._recent_401s) >= UNAUTHORIZED_LIMIT:
            raise answer.error()
        if len(self._recent_401s) > 1:
            # The token was fresh and still refused: perhaps a replica that has not seen the
            # consent yet. Once more after a second, then it is the credentials.
            if not patience.allows(1.0):
                raise answer.error()
            sleep(1.0)

    @staticmethod
    def _tls_error(url: str, exc: Exception) -> MailboxError:
        return base.PermanentMailboxError(
            f"The TLS certificate of {urlsplit(url).netloc} is not trusted ({exc}). If it is issued by a "
            "private CA, give its bundle in the settings (CA bundle)."
        )

    # Throttling ------------------------------------------------------------------------------

    def _throttle_key(self, mailbox: str) -> tuple[str, str, str]:
        # Graph throttles per app and mailbox (and a multi-tenant app per tenant's endpoint).
        return (self.endpoint, self.config.client_id, mailbox.lower())

    def _wait_turn(self, mailbox: str, patience: _Patience) -> None:
        """Honour a Retry-After this mailbox was given (by this pass or another in the process)."""
        with _resume_lock:
            resume = _resume_at.get(self._throttle_key(mailbox), 0.0)
        wait = resume - monotonic()
        if wait <= 0:
            return
        if not patience.allows(wait):
            raise base.Throttled(
                f"Microsoft Graph asked to wait {wait:.0f} s before the next request for {mailbox}.",
                retry_after=wait,
                code="429",
            )
        sleep(wait)

    def _throttled(self, mailbox: str, seconds: float) -> None:
        with _resume_lock:
            key = self._throttle_key(mailbox)
            _resume_at[key] = max(_resume_at.get(key, 0.0), monotonic() + seconds)

    # The wire --------------------------------------------------------------------------------

    def _absolute(self, url: str) -> str:
        if url.startswith("/"):
            return self.endpoint + url
        if urlsplit(url).netloc != urlsplit(self.endpoint).netloc:
            # Never send the token elsewhere (a link stored for another endpoint).
            raise base.InvalidSyncToken(f"The link {url[:80]}… is not one of {self.endpoint}.")
        return url

    def send(
        self,
        mailbox: str,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool = True,
        patience: _Patience | None = None,
    ) -> Answer:
        """One HTTP request with token, throttling, 401 and transport-error handling; the answer
        may still be an error (the caller maps it)."""
        patience = patience or _Patience(self.config.max_wait_s)
        absolute = self._absolute(url)
        attempt = 0
        slot = _slot(self._throttle_key(mailbox))
        while True:
            self._wait_turn(mailbox, patience)
            with self._token_lock:
                refusals, token = self._refusals, self.access_token()
            request_headers = {"Prefer": IMMUTABLE_IDS, "Authorization": f"Bearer {token}"}
            request_headers.update(headers or {})
            try:
                with slot:
                    response = self._http.request(method, absolute, json=body, headers=request_headers)
            except httpx.ConnectError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise self._tls_error(absolute, exc) from exc
                attempt = self._transport_retry(exc, attempt, idempotent, patience)
                continue
            except httpx.TransportError as exc:
                attempt = self._transport_retry(exc, attempt, idempotent, patience)
                continue
            # items(): one pass over the headers (dict(headers) looks each name up again).
            answer = Answer(response.status_code, _json(response), dict(response.headers.items()))
            if answer.status == 401:
                self._unauthorized(answer, patience, refusals)
                continue
            if answer.status in THROTTLE_STATUSES:
                attempt += 1
                wait = _retry_after_seconds(response.headers, min(2.0**attempt, 30.0))
                self._throttled(mailbox, wait)
                if patience.allows(wait):
                    continue  # _wait_turn sleeps
                raise translate(answer.status, answer.body, retry_after=wait)
            return answer

    def _transport_retry(self, exc: Exception, attempt: int, idempotent: bool, patience: _Patience) -> int:
        """A request that got no answer: retried when it is safe to repeat, else a transient error
        (a create that may have arrived is found by its sync id on the next pass)."""
        attempt += 1
        wait = min(2.0 ** (attempt - 1), 8.0)
        if not idempotent or attempt > TRANSPORT_RETRIES or not patience.allows(wait):
            raise base.TransientMailboxError(
                f"Microsoft Graph is not answering normally ({type(exc).__name__}: {exc})."
            ) from exc
        sleep(wait)
        return attempt

    def get(self, mailbox: str, url: str, *, headers: dict[str, str] | None = None) -> Any:
        answer = self.send(mailbox, "GET", url, headers=headers)
        if not answer.ok:
            raise answer.error()
        return answer.body

    def pages(
        self, mailbox: str, url: str, *, headers: dict[str, str] | None = None
    ) -> Iterable[dict[str, Any]]:
        """Every page of a collection, following @odata.nextLink; the last page is yielded whole
        too (it carries the deltaLink of a delta round)."""
        while url:
            page = self.get(mailbox, url, headers=headers)
            yield page
            url = page.get("@odata.nextLink", "")

    def batch(self, mailbox: str, calls: Sequence[Call], *, idempotent: bool | None = None) -> list[Answer]:
        """Run calls through $batch, at most 20 per request and up to 4 requests at once; one
        answer per call, in order. The calls of one batch are independent of each other (no
        ``dependsOn``): a write that must follow another is made by a later call.

        Sub-requests that are throttled are sent again after their Retry-After (within the
        configured wait); a 401 drops the token and sends them again; mailbox-wide refusals
        (403, no such mailbox) end the call."""
        answers: list[Answer | None] = [None] * len(calls)
        pending = list(range(len(calls)))
        patience = _Patience(self.config.max_wait_s)
        safe = idempotent if idempotent is not None else all(c.method != "POST" for c in calls)
        rounds = 0
        while pending:
            again: list[int] = []
            waits: list[float] = []
            chunks = [pending[start : start + BATCH_LIMIT] for start in range(0, len(pending), BATCH_LIMIT)]
            self._wait_turn(mailbox, patience)  # once for the round, not once per thread
            refusals = self._refusals
            outers = self._send_batches(
                mailbox,
                [{"requests": [self._sub_request(str(i), calls[i]) for i in chunk]} for chunk in chunks],
                safe,
                patience,
            )
            unauthorized = None
            for chunk, outer in zip(chunks, outers, strict=True):
                if not outer.ok:
                    raise outer.error()
                for item in (outer.body or {}).get("responses", []):
                    index = int(item["id"])
                    answer = Answer(int(item.get("status", 500)), item.get("body"), item.get("headers") or {})
                    if answer.status in THROTTLE_STATUSES:
                        waits.append(_retry_after_seconds(answer.headers, min(2.0 ** (rounds + 1), 30.0)))
                        again.append(index)
                        answers[index] = answer
                    elif answer.status == 401:
                        unauthorized = answer
                        again.append(index)
                    else:
                        if not answer.ok and _is_mailbox_wide(answer.error()):
                            raise answer.error()
                        answers[index] = answer
                missing = [i for i in chunk if answers[i] is None and i not in again]
                if missing:  # a server that left sub-requests unanswered: ask again
                    again.extend(missing)
            if unauthorized is not None:  # the round's requests went with one token: one refusal
                self._unauthorized(unauthorized, patience, refusals)
            if not again:
                break
            rounds += 1
            wait = max(waits, default=0.0)
            if waits:
                self._throttled(mailbox, wait)
                if not patience.allows(wait):
                    raise base.Throttled(
                        f"Microsoft Graph is throttling {mailbox}; it asked to wait {wait:.0f} s.",
                        retry_after=wait,
                        code="429",
                    )
            if rounds > 10 and not waits:
                raise base.TransientMailboxError("Microsoft Graph left parts of a $batch unanswered.")
            pending = sorted(set(again))
        return [a if a is not None else Answer(500) for a in answers]

    def _send_batches(
        self, mailbox: str, bodies: list[dict[str, Any]], safe: bool, patience: _Patience
    ) -> list[Answer]:
        """The $batch requests of one round, up to 4 at once (latency is most of a write's cost);
        answers in order, the first error (in order) raised once every request has ended."""
        if len(bodies) == 1:
            return [self.send(mailbox, "POST", "/$batch", body=bodies[0], idempotent=safe, patience=patience)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="graph-batch")
        futures: list[Future[Answer]] = [
            self._pool.submit(self.send, mailbox, "POST", "/$batch", body=body, idempotent=safe, patience=patience)
            for body in bodies
        ]
        try:
            return [future.result() for future in futures]
        finally:
            # An error: what has not started is not sent, and nothing runs on after the call.
            for future in futures:
                future.cancel()
            for future in futures:
                if not future.cancelled():
                    future.exception()

    @staticmethod
    def _sub_request(request_id: str, call: Call) -> dict[str, Any]:
        headers = {"Prefer": IMMUTABLE_IDS, **call.headers}
        sub: dict[str, Any] = {"id": request_id, "method": call.method, "url": call.url, "headers": headers}
        if call.body is not None:
            sub["body"] = call.body
            sub["headers"]["Content-Type"] = "application/json"
        return sub

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._http.close()


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return {"error": {"code": "", "message": response.text[:200]}}
