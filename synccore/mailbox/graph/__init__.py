"""Exchange Online through Microsoft Graph v1.0: the only module that talks to Graph.

Choices that matter (see docs/exchange-online.md):
- app-only tokens from msal (client credentials) with one token cache per process and app, so a
  pass in a warm worker costs no token request; a 401 drops the cached token and retries once
  with a fresh one; a burst of 401s (three within 30 s) is a credentials error, as over EWS;
- one pooled httpx client per backend (keep-alive; HTTP/1.1: ``$batch`` already multiplexes);
- every write goes through ``$batch``, at most 20 requests each; throttled sub-requests are
  retried on their own after their ``Retry-After``;
- ``Retry-After`` is honoured per app and mailbox, process-wide: a mailbox that was told to wait
  is not asked again before its time, by any pass; a wait longer than the configured maximum
  raises ``Throttled`` with the server's figure, and the engine backs off;
- ids follow ``Prefer: IdType="ImmutableId"`` (a contact's id does not change when it moves);
- the sync id is the named extended property of base.PROPERTY_SET_ID, as over EWS;
- delta tokens are whole ``@odata.deltaLink`` URLs, stored like EWS sync states; ``410 Gone``
  (or a link of another host) is an InvalidSyncToken: the engine reconciles;
- every request on the wire is counted in ``requests`` (a ``$batch`` is one request; token
  requests to the authority count too).
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import ssl
import threading
import time as clock
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import msal
import requests
import requests.adapters

from synccore.mailbox import base
from synccore.mailbox.base import (
    CalendarEvent,
    ChangePage,
    ConnectionConfig,
    ContactCard,
    ItemResult,
    MailboxBackend,
    MailboxError,
    RemoteRef,
)
from synccore.mailbox.counting import RequestCounter
from synccore.mailbox.graph.translation import (
    ALL_CARD_FIELDS,
    BUSINESS_FAX_PROPERTY_ID,
    EVENT_SELECT,
    EXPAND_SYNC_ID,
    SYNC_ID_PROPERTY_ID,
    UTC_TIMES,
    CalendarToken,
    change_key_of,
    contact_body,
    copy_body,
    deletion_results,
    event_body,
    event_from_graph,
    extended_value,
    graph_time,
    if_match,
    instance_span,
    iso_z,
    item_results,
    odata_string,
    parse_iso,
    recurrence_to_rrule,
    rrule_to_recurrence,
    sync_id_filter,
)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://graph.microsoft.com/v1.0"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
BATCH_LIMIT = 20  # Graph's limit of requests per $batch
PAGE_SIZE = 1000  # $top of lists (Graph's largest)
DELTA_PAGE_SIZE = 200  # odata.maxpagesize of delta rounds: Exchange Online serves at most 200
DEFAULT_CONTACTS = "contacts"  # the well-known name of the default Contacts folder
FIND_CHUNK = 20  # sync ids looked up one by one (one $batch) before the whole folder is listed
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
    with _resume_lock:
        _resume_at.clear()


# --- Throttling: Retry-After per app and mailbox, shared by every backend of the process -------

_resume_at: dict[tuple[str, str, str], float] = {}
_resume_lock = threading.Lock()


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
        self.deadline = _monotonic() + self.max_wait_s

    def allows(self, seconds: float) -> bool:
        return _monotonic() + seconds <= self.deadline


def _sleep(seconds: float) -> None:
    """Waiting for the server (module functions, so tests can see the waits and skip them)."""
    clock.sleep(seconds)


def _monotonic() -> float:
    return clock.monotonic()


# --- Errors -----------------------------------------------------------------------------------


def _error_parts(body: Any) -> tuple[str, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return "", ""


def translate(status: int, body: Any, *, retry_after: float | None = None) -> MailboxError:
    """One Graph answer that is not a success → the backend error family."""
    code, message = _error_parts(body)
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


def _q(value: str) -> str:
    return quote(value, safe="")


_QUERY_SAFE = "(),'=:@$/"


def _query(**params: str | int) -> str:
    """An OData query string: ``$`` names kept, values percent-encoded (spaces as %20)."""
    return "&".join(f"${name}={quote(str(value), safe=_QUERY_SAFE)}" for name, value in params.items())



# --- One request, alone or inside a $batch --------------------------------------------------


@dataclass
class Call:
    method: str
    url: str  # relative to the endpoint ("/users/…"), as $batch wants it
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


# An occurrence id of a series that no longer has that occurrence (deleted, or the series was
# ended or re-patterned) is answered with these rather than a 404.
_GONE_OCCURRENCE_CODES = frozenset(
    {"ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange", "ErrorCalendarOccurrenceIsDeletedFromRecurrence"}
)


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



def _now() -> datetime:
    # The product's clock (tests move it together with the simulator's).
    from django.utils import timezone

    return timezone.now()


# --- The backend ------------------------------------------------------------------------------

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


class GraphBackend(MailboxBackend):
    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self.endpoint = (config.graph_endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.scope = graph_scope(self.endpoint)
        self.authority = (config.authority_url or f"{DEFAULT_AUTHORITY_HOST}/{config.tenant_id}").rstrip("/")
        self._verify: str | bool = config.ca_bundle or True
        self._http = httpx.Client(
            verify=ssl.create_default_context(cafile=config.ca_bundle) if config.ca_bundle else True,
            timeout=httpx.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s)),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            headers={"Accept": "application/json"},
            event_hooks={"request": [self._count]},
        )
        self._requests = 0
        self._token: str = ""
        self._recent_401s: list[float] = []

    # Counting ------------------------------------------------------------------------------

    @property
    def requests(self) -> int:  # type: ignore[override]
        return self._requests

    def _count(self, request: httpx.Request) -> None:
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
        before = _token_requests_sent()
        try:
            app = self._app()
            try:
                result = app.acquire_token_for_client(scopes=[self.scope])
            except requests.exceptions.SSLError as exc:
                raise self._tls_error(self.authority, exc) from exc
            except requests.RequestException as exc:
                raise base.TransientMailboxError(
                    f"The token authority {self.authority} is not answering ({exc})."
                ) from exc
        finally:
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

    def _drop_token(self) -> None:
        """The server refused our token: forget it here and in the shared cache."""
        self._token = ""
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

    def _unauthorized(self, answer: Answer, patience: _Patience) -> None:
        """A 401: drop the token and go on (a fresh one is fetched), unless it is a burst."""
        now = _monotonic()
        self._recent_401s = [t for t in self._recent_401s if now - t < UNAUTHORIZED_WINDOW_S] + [now]
        self._drop_token()
        if len(self._recent_401s) >= UNAUTHORIZED_LIMIT:
            raise answer.error()
        if len(self._recent_401s) > 1:
            # The token was fresh and still refused: perhaps a replica that has not seen the
            # consent yet. Once more after a second, then it is the credentials.
            if not patience.allows(1.0):
                raise answer.error()
            _sleep(1.0)

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
        wait = resume - _monotonic()
        if wait <= 0:
            return
        if not patience.allows(wait):
            raise base.Throttled(
                f"Microsoft Graph asked to wait {wait:.0f} s before the next request for {mailbox}.",
                retry_after=wait,
                code="429",
            )
        _sleep(wait)

    def _throttled(self, mailbox: str, seconds: float) -> None:
        with _resume_lock:
            key = self._throttle_key(mailbox)
            _resume_at[key] = max(_resume_at.get(key, 0.0), _monotonic() + seconds)

    # The wire --------------------------------------------------------------------------------

    def _absolute(self, url: str) -> str:
        if url.startswith("/"):
            return self.endpoint + url
        if urlsplit(url).netloc != urlsplit(self.endpoint).netloc:
            # Never send the token elsewhere (a link stored for another endpoint).
            raise base.InvalidSyncToken(f"The link {url[:80]}… is not one of {self.endpoint}.")
        return url

    def _send(
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
        while True:
            self._wait_turn(mailbox, patience)
            request_headers = {"Prefer": IMMUTABLE_IDS, "Authorization": f"Bearer {self.access_token()}"}
            request_headers.update(headers or {})
            try:
                response = self._http.request(method, absolute, json=body, headers=request_headers)
            except httpx.ConnectError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise self._tls_error(absolute, exc) from exc
                attempt = self._transport_retry(exc, attempt, idempotent, patience)
                continue
            except httpx.TransportError as exc:
                attempt = self._transport_retry(exc, attempt, idempotent, patience)
                continue
            answer = Answer(response.status_code, _json(response), dict(response.headers))
            if answer.status == 401:
                self._unauthorized(answer, patience)
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
        _sleep(wait)
        return attempt

    def _get(self, mailbox: str, url: str, *, headers: dict[str, str] | None = None) -> Any:
        answer = self._send(mailbox, "GET", url, headers=headers)
        if not answer.ok:
            raise answer.error()
        return answer.body

    def _pages(
        self, mailbox: str, url: str, *, headers: dict[str, str] | None = None
    ) -> Iterable[dict[str, Any]]:
        """Every page of a collection, following @odata.nextLink; the last page is yielded whole
        too (it carries the deltaLink of a delta round)."""
        while url:
            page = self._get(mailbox, url, headers=headers)
            yield page
            url = page.get("@odata.nextLink", "")

    def batch(self, mailbox: str, calls: Sequence[Call], *, idempotent: bool | None = None) -> list[Answer]:
        """Run calls through $batch, at most 20 per request; one answer per call, in order.

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
            for start in range(0, len(pending), BATCH_LIMIT):
                chunk = pending[start : start + BATCH_LIMIT]
                outer = self._send(
                    mailbox,
                    "POST",
                    "/$batch",
                    body={"requests": [self._sub_request(str(i), calls[i]) for i in chunk]},
                    idempotent=safe,
                    patience=patience,
                )
                if not outer.ok:
                    raise outer.error()
                unauthorized = None
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
                if unauthorized is not None:
                    self._unauthorized(unauthorized, patience)
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

    @staticmethod
    def _sub_request(request_id: str, call: Call) -> dict[str, Any]:
        headers = {"Prefer": IMMUTABLE_IDS, **call.headers}
        sub: dict[str, Any] = {"id": request_id, "method": call.method, "url": call.url, "headers": headers}
        if call.body is not None:
            sub["body"] = call.body
            sub["headers"]["Content-Type"] = "application/json"
        return sub

    # Paths -----------------------------------------------------------------------------------

    @staticmethod
    def user(mailbox: str) -> str:
        return f"/users/{quote(mailbox, safe='@')}"

    # Connection check ------------------------------------------------------------------------

    def check(self, mailbox: str) -> list[str]:
        """Get a token, then open the mailbox's contacts folder and its calendar; either is
        enough (an app may hold only one of the two permissions), neither raises."""
        tried = [f"Microsoft Graph {self.endpoint} as application {self.config.client_id}"]
        self.access_token()
        tried.append(f"got an application token from {self.authority}")
        first_error: MailboxError | None = None
        for what, url in (
            ("contacts folder", f"{self.user(mailbox)}/contactFolders/contacts?{_query(select='id')}"),
            ("calendar", f"{self.user(mailbox)}/calendar?{_query(select='id')}"),
        ):
            try:
                self._get(mailbox, url)
            except (base.AccessDenied, base.InvalidItem, base.ItemNotFound) as exc:
                tried.append(f"could not open the {what} of {mailbox}: {exc}")
                first_error = first_error or exc
                continue
            tried.append(f"opened the {what} of {mailbox}")
        if first_error is not None and not any(line.startswith("opened") for line in tried):
            raise first_error
        return tried

    # Contact folders ---------------------------------------------------------------------------

    def ensure_contact_folder(self, mailbox: str, name: str) -> str:
        if not name:
            # Graph takes the well-known name wherever a folder id goes: no request.
            return DEFAULT_CONTACTS
        # Folders directly under the default Contacts folder, which is where Outlook shows them.
        folders = f"{self.user(mailbox)}/contactFolders"
        found = self._get(
            mailbox,
            f"{folders}?{_query(filter=f'displayName eq {odata_string(name)}', select='id,displayName')}",
        )
        for folder in found.get("value", []):
            if str(folder.get("displayName", "")).lower() == name.lower():
                return folder["id"]
        answer = self._send(mailbox, "POST", folders, body={"displayName": name}, idempotent=False)
        if answer.status == 409:  # made meanwhile by another pass
            return self.ensure_contact_folder(mailbox, name)
        if not answer.ok:
            raise answer.error()
        return answer.body["id"]

    # Reading ---------------------------------------------------------------------------------

    def _delta(self, mailbox: str, first_url: str, token: str, folder_id: str) -> ChangePage:
        """One delta round: every page, removals as ``@removed``; the token is the deltaLink."""
        changed: dict[str, RemoteRef] = {}
        deleted: dict[str, None] = {}
        headers = {"Prefer": f"{IMMUTABLE_IDS}, odata.maxpagesize={DELTA_PAGE_SIZE}"}
        page: dict[str, Any] = {}
        try:
            for page in self._pages(mailbox, token or first_url, headers=headers):
                for entry in page.get("value", []):
                    item_id = entry["id"]
                    if "@removed" in entry:
                        changed.pop(item_id, None)
                        deleted[item_id] = None
                    else:
                        deleted.pop(item_id, None)
                        changed[item_id] = RemoteRef(item_id, change_key_of(entry), folder_id)
        except base.ItemNotFound as exc:
            if token:  # a token of a folder that is no more: a reconcile finds the truth
                raise base.InvalidSyncToken(str(exc), code=exc.code) from exc
            raise
        except base.InvalidItem as exc:
            if token:  # a malformed or foreign token (e.g. stored by the EWS backend)
                raise base.InvalidSyncToken(str(exc), code=exc.code) from exc
            raise
        next_token = page.get("@odata.deltaLink", "")
        if not next_token:
            raise base.TransientMailboxError("Microsoft Graph ended a delta round without a deltaLink.")
        return ChangePage(changed=list(changed.values()), deleted=list(deleted), token=next_token)

    def contact_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        first = f"{self.user(mailbox)}/contactFolders/{_q(folder_id)}/contacts/delta?{_query(select='id,changeKey')}"
        return self._delta(mailbox, first, token, folder_id)

    def _folder_items(self, mailbox: str, folder_id: str) -> Iterable[dict[str, Any]]:
        url = f"{self.user(mailbox)}/contactFolders/{_q(folder_id)}/contacts?" + _query(
            select="id,changeKey", expand=EXPAND_SYNC_ID, top=PAGE_SIZE
        )
        for page in self._pages(mailbox, url):
            yield from page.get("value", [])

    def list_synced_items(self, mailbox: str, folder_id: str) -> dict[str, RemoteRef]:
        found: dict[str, RemoteRef] = {}
        for item in self._folder_items(mailbox, folder_id):
            sync_id = extended_value(item, SYNC_ID_PROPERTY_ID)
            if sync_id:
                found.setdefault(sync_id, RemoteRef(item["id"], change_key_of(item), folder_id))
        return found

    def find_by_sync_ids(
        self, mailbox: str, folder_ids: Sequence[str], sync_ids: Sequence[str]
    ) -> dict[str, RemoteRef]:
        wanted = list(dict.fromkeys(sync_ids))
        found: dict[str, RemoteRef] = {}
        for folder_id in dict.fromkeys(folder_ids):
            missing = [s for s in wanted if s not in found]
            if not missing:
                break
            if len(missing) > FIND_CHUNK:
                # Many lost links (a failed pass): reading the folder once is cheaper.
                listed = self.list_synced_items(mailbox, folder_id)
                found.update({s: listed[s] for s in missing if s in listed})
                continue
            calls = [
                Call(
                    "GET",
                    f"{self.user(mailbox)}/contactFolders/{_q(folder_id)}/contacts?"
                    + _query(filter=sync_id_filter(s), select="id,changeKey"),
                )
                for s in missing
            ]
            for sync_id, answer in zip(missing, self.batch(mailbox, calls), strict=True):
                if not answer.ok:
                    raise answer.error()
                for item in answer.body.get("value", [])[:1]:
                    found[sync_id] = RemoteRef(item["id"], change_key_of(item), folder_id)
        return found

    # Writing ---------------------------------------------------------------------------------

    def create_contacts(self, mailbox: str, folder_id: str, cards: Sequence[ContactCard]) -> list[ItemResult]:
        if not cards:
            return []
        url = f"{self.user(mailbox)}/contactFolders/{_q(folder_id)}/contacts"
        answers = self.batch(mailbox, [Call("POST", url, contact_body(card)) for card in cards])
        return item_results(answers, folder_id)

    def update_contacts(
        self, mailbox: str, updates: Sequence[tuple[RemoteRef, ContactCard, Iterable[str]]]
    ) -> list[ItemResult]:
        if not updates:
            return []
        calls = []
        for ref, card, names in updates:
            names = list(names)
            whole = set(ALL_CARD_FIELDS) <= set(names)
            # A partial update is made against the version we know; a whole overwrite (C6) is not.
            headers = {} if whole else if_match(ref.change_key)
            calls.append(
                Call("PATCH", self._contact_url(mailbox, ref.item_id), contact_body(card, names), headers)
            )
        answers = self.batch(mailbox, calls)
        stale = [i for i, a in enumerate(answers) if a.status == 412]
        if stale:
            # Changed in Outlook since we last saw it: the CRM is the source (C6), so every mapped
            # field is written onto the current version.
            again = self.batch(
                mailbox,
                [
                    Call(
                        "PATCH",
                        self._contact_url(mailbox, updates[i][0].item_id),
                        contact_body(updates[i][1], ALL_CARD_FIELDS),
                    )
                    for i in stale
                ],
            )
            for i, answer in zip(stale, again, strict=True):
                answers[i] = answer
        return [
            ItemResult(ref=RemoteRef(ref.item_id, change_key_of(a.body or {}), ref.folder_id))
            if a.ok
            else ItemResult(error=a.error())
            for (ref, _, _), a in zip(updates, answers, strict=True)
        ]

    def _contact_url(self, mailbox: str, item_id: str) -> str:
        return f"{self.user(mailbox)}/contacts/{_q(item_id)}"

    def move_items(self, mailbox: str, refs: Sequence[RemoteRef], folder_id: str) -> list[ItemResult]:
        """Graph v1.0 cannot move a contact: copy it into the folder, then delete the original
        (the copy has a new id; a copy left by an interrupted move is found by its sync id)."""
        if not refs:
            return []
        expand = (
            "singleValueExtendedProperties($filter=id eq "
            f"{odata_string(SYNC_ID_PROPERTY_ID)} or id eq {odata_string(BUSINESS_FAX_PROPERTY_ID)})"
        )
        reads = self.batch(
            mailbox,
            [Call("GET", f"{self._contact_url(mailbox, r.item_id)}?{_query(expand=expand)}") for r in refs],
        )
        results: list[ItemResult | None] = [None] * len(refs)
        sources: dict[int, dict[str, Any]] = {}
        for i, answer in enumerate(reads):
            if answer.ok:
                sources[i] = answer.body
            else:
                results[i] = ItemResult(error=answer.error())
        present = (
            self.list_synced_items(mailbox, folder_id)
            if any(extended_value(s, SYNC_ID_PROPERTY_ID) for s in sources.values())
            else {}
        )
        to_copy = []
        copies: dict[int, RemoteRef] = {}
        for i, source in sources.items():
            if source.get("parentFolderId") == folder_id:
                copies[i] = RemoteRef(source["id"], change_key_of(source), folder_id)
                results[i] = ItemResult(ref=copies[i])
                continue
            existing = present.get(extended_value(source, SYNC_ID_PROPERTY_ID) or "\0")
            if existing is not None:
                copies[i] = existing
            else:
                to_copy.append(i)
        url = f"{self.user(mailbox)}/contactFolders/{_q(folder_id)}/contacts"
        created = self.batch(mailbox, [Call("POST", url, copy_body(sources[i])) for i in to_copy])
        for i, answer in zip(to_copy, created, strict=True):
            if answer.ok:
                copies[i] = RemoteRef(answer.body["id"], change_key_of(answer.body), folder_id)
            else:
                results[i] = ItemResult(error=answer.error())
        originals = [i for i in copies if results[i] is None]
        deleted = self.delete_items(mailbox, [refs[i] for i in originals])
        for i, outcome in zip(originals, deleted, strict=True):
            results[i] = ItemResult(ref=copies[i]) if outcome.ok else ItemResult(error=outcome.error)
        return [r if r is not None else ItemResult(error=base.ItemError("not moved")) for r in results]

    def _delete(self, mailbox: str, urls: Sequence[str], refs: Sequence[RemoteRef]) -> list[ItemResult]:
        return deletion_results(refs, self.batch(mailbox, [Call("DELETE", url) for url in urls]))

    def delete_items(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[ItemResult]:
        if not refs:
            return []
        return self._delete(mailbox, [self._contact_url(mailbox, r.item_id) for r in refs], refs)

    # Calendar ----------------------------------------------------------------------------------

    def ensure_calendar_folder(self, mailbox: str) -> str:
        return self._get(mailbox, f"{self.user(mailbox)}/calendar?{_query(select='id')}")["id"]

    def calendar_window(self) -> tuple[datetime, datetime]:
        """The calendarView a delta round covers: from yesterday (events under way) to the
        engine's horizon, which moves by whole days (K15)."""
        today = _now().astimezone(UTC).date()
        start = datetime.combine(today - timedelta(days=1), time.min, UTC)
        end = datetime.combine(today + timedelta(days=self.config.calendar_horizon_days + 1), time.min, UTC)
        return start, end

    def _calendar_round(
        self,
        mailbox: str,
        url: str,
        folder_id: str,
        changed: dict[str, RemoteRef],
        removed: set[str],
        masters: set[str],
    ) -> str:
        """One calendarView delta round: singles as refs, occurrences and exceptions as their
        series master's id; removals by id. Returns the deltaLink."""
        headers = {"Prefer": f"{IMMUTABLE_IDS}, {UTC_TIMES}, odata.maxpagesize={DELTA_PAGE_SIZE}"}
        page: dict[str, Any] = {}
        for page in self._pages(mailbox, url, headers=headers):
            for entry in page.get("value", []):
                item_id = entry["id"]
                if "@removed" in entry:
                    changed.pop(item_id, None)
                    removed.add(item_id)
                elif entry.get("type") in ("occurrence", "exception") and entry.get("seriesMasterId"):
                    masters.add(entry["seriesMasterId"])
                elif entry.get("type") == "seriesMaster":
                    masters.add(item_id)
                else:
                    removed.discard(item_id)
                    changed[item_id] = RemoteRef(item_id, change_key_of(entry), folder_id)
        link = page.get("@odata.deltaLink", "")
        if not link:
            raise base.TransientMailboxError("Microsoft Graph ended a delta round without a deltaLink.")
        return link

    def _calendar_view_url(self, mailbox: str, start: datetime, end: datetime, *, delta: bool) -> str:
        window = f"startDateTime={iso_z(start)}&endDateTime={iso_z(end)}"
        if delta:
            return f"{self.user(mailbox)}/calendarView/delta?{window}"
        return f"{self.user(mailbox)}/calendarView?{window}&" + _query(
            select="id,changeKey,type,seriesMasterId", top=PAGE_SIZE
        )

    def _event_heads(self, mailbox: str, ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """What identifies each event (id, change key, type, series, iCalUId); None for one that
        is gone. Found by id is not yet in the calendar: an event deleted in Outlook lies in
        Deleted Items under the same immutable id."""
        wanted = list(dict.fromkeys(ids))
        select = _query(select="id,changeKey,type,seriesMasterId,iCalUId")
        calls = [Call("GET", f"{self._event_url(mailbox, i)}?{select}") for i in wanted]
        out: dict[str, dict[str, Any] | None] = {}
        for item_id, answer in zip(wanted, self.batch(mailbox, calls), strict=True):
            if answer.ok:
                out[item_id] = answer.body
            elif answer.status == 404 or _error_parts(answer.body)[0] in _GONE_OCCURRENCE_CODES:
                out[item_id] = None
            else:
                raise answer.error()
        return out

    def master_keys(self, mailbox: str, master_ids: Iterable[str]) -> dict[str, str | None]:
        """The current change key of each series master; None for one that is gone."""
        return {
            master_id: change_key_of(head) if head is not None else None
            for master_id, head in self._event_heads(mailbox, master_ids).items()
        }

    def _in_calendar(self, mailbox: str, folder_id: str, heads: dict[str, dict[str, Any]]) -> set[str]:
        """The events among ``heads`` that are in the calendar folder: a folder's event list
        holds only its own items (a lookup by id finds them wherever they lie)."""
        wanted = [(item_id, head) for item_id, head in heads.items() if head.get("iCalUId")]
        folder = f"{self.user(mailbox)}/calendars/{_q(folder_id)}/events"
        calls = [
            Call("GET", f"{folder}?{_query(filter='iCalUId eq ' + odata_string(head['iCalUId']), select='id')}")
            for _, head in wanted
        ]
        present = {item_id for item_id, head in heads.items() if not head.get("iCalUId")}
        for (item_id, _), answer in zip(wanted, self.batch(mailbox, calls), strict=True):
            if not answer.ok:
                raise answer.error()
            if any(entry.get("id") == item_id for entry in (answer.body or {}).get("value", [])):
                present.add(item_id)
        return present

    def calendar_present(self, mailbox: str, folder_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        heads = {i: h for i, h in self._event_heads(mailbox, item_ids).items() if h is not None}
        present = self._in_calendar(mailbox, folder_id, heads) if heads else set()
        return {item_id: change_key_of(heads[item_id]) for item_id in item_ids if item_id in present}

    def calendar_changes(self, mailbox: str, folder_id: str, token: str) -> ChangePage:
        state = CalendarToken.load(token)
        start, end = self.calendar_window()
        changed: dict[str, RemoteRef] = {}
        removed: set[str] = set()
        touched: set[str] = set()
        known = dict(state.masters) if state else {}
        link, window_end = "", end
        if state is not None:
            try:
                link = self._calendar_round(mailbox, state.link, folder_id, changed, removed, touched)
            except (base.ItemNotFound, base.InvalidItem) as exc:
                raise base.InvalidSyncToken(str(exc), code=exc.code) from exc
            window_end = state.window_end
        if state is None or state.window_end < end:
            # The window slid (K15): a new round over the new window; what it lists that the
            # engine already knows at the same change key is not read again.
            link = self._calendar_round(
                mailbox,
                self._calendar_view_url(mailbox, start, end, delta=True),
                folder_id,
                changed,
                removed,
                touched,
            )
            window_end = end
        deleted = self._removals(mailbox, folder_id, removed, touched, known, changed)
        return ChangePage(
            changed=list(changed.values()),
            deleted=sorted(deleted - changed.keys()),
            token=CalendarToken(link, window_end, known).dump(),
        )

    def _removals(
        self,
        mailbox: str,
        folder_id: str,
        removed: set[str],
        touched: set[str],
        known: dict[str, str],
        changed: dict[str, RemoteRef],
    ) -> set[str]:
        """What of a round's ``@removed`` entries is deleted. Graph marks alike an event deleted,
        one that left the window (moved beyond the horizon in Outlook) and one changed outside
        it: each is looked up, and only what is no longer in the calendar is deleted; the rest
        is a change (never a deletion of a linked event that merely moved away). Series masters
        whose occurrences changed, or any known one when something was removed (a series
        deleted whole shows only as removed occurrences), get their change keys checked."""
        deleted: set[str] = set()
        doubtful: dict[str, dict[str, Any]] = {}
        masters = set(touched)
        heads = self._event_heads(mailbox, removed)
        for item_id, head in heads.items():
            if head is None:
                deleted.add(item_id)
            elif head.get("type") in ("occurrence", "exception"):
                if head.get("seriesMasterId"):
                    masters.add(head["seriesMasterId"])
            else:
                doubtful[item_id] = head
        if removed:
            masters |= set(known)
        master_heads = self._event_heads(mailbox, masters - heads.keys())
        for master_id, head in master_heads.items():
            if head is None:
                deleted.add(master_id)
            elif master_id not in touched:  # touched: its occurrences are in the calendar's view
                doubtful[master_id] = head
        present = self._in_calendar(mailbox, folder_id, doubtful) if doubtful else set()
        deleted |= doubtful.keys() - present
        for item_id, head in {**heads, **master_heads}.items():
            if head is None or item_id in deleted or head.get("type") in ("occurrence", "exception"):
                known.pop(item_id, None)
                continue
            key = change_key_of(head)
            if head.get("type") != "seriesMaster":
                changed[item_id] = RemoteRef(item_id, key, folder_id)
                continue
            if item_id in touched or item_id in removed or known.get(item_id) != key:
                changed[item_id] = RemoteRef(item_id, key, folder_id)
            known[item_id] = key
        return deleted

    def calendar_slice(self, mailbox: str, folder_id: str, start: datetime, end: datetime) -> list[RemoteRef]:
        refs: dict[str, RemoteRef] = {}
        headers = {"Prefer": f"{IMMUTABLE_IDS}, {UTC_TIMES}"}
        for page in self._pages(
            mailbox, self._calendar_view_url(mailbox, start, end, delta=False), headers=headers
        ):
            for entry in page.get("value", []):
                if entry.get("type") in ("occurrence", "exception") and entry.get("seriesMasterId"):
                    refs.setdefault(
                        entry["seriesMasterId"], RemoteRef(entry["seriesMasterId"], "", folder_id)
                    )
                else:
                    refs[entry["id"]] = RemoteRef(entry["id"], change_key_of(entry), folder_id)
        return list(refs.values())

    def _event_url(self, mailbox: str, item_id: str) -> str:
        return f"{self.user(mailbox)}/events/{_q(item_id)}"

    def get_events(self, mailbox: str, refs: Sequence[RemoteRef]) -> list[CalendarEvent | MailboxError]:
        if not refs:
            return []
        query = _query(select=EVENT_SELECT, expand=EXPAND_SYNC_ID)
        headers = {"Prefer": f"{IMMUTABLE_IDS}, {UTC_TIMES}"}
        answers = self.batch(
            mailbox,
            [Call("GET", f"{self._event_url(mailbox, r.item_id)}?{query}", None, headers) for r in refs],
        )
        out: list[CalendarEvent | MailboxError] = []
        for ref, answer in zip(refs, answers, strict=True):
            if not answer.ok:
                out.append(answer.error())
                continue
            try:
                out.append(event_from_graph(answer.body, ref.folder_id))
            except MailboxError as exc:
                out.append(exc)
            except (ValueError, KeyError, TypeError) as exc:
                out.append(base.InvalidItem(f"The event cannot be read ({exc})."))
        series = [
            e
            for e in out
            if isinstance(e, CalendarEvent) and e.recurrence and not e.recurrence.startswith("X-")
        ]
        if series:
            self._read_occurrences(mailbox, series)
        return out

    def create_events(
        self, mailbox: str, folder_id: str, events: Sequence[CalendarEvent], *, send_invitations: bool
    ) -> list[ItemResult]:
        if not events:
            return []
        url = f"{self.user(mailbox)}/calendars/{_q(folder_id)}/events"
        prepared: list[Call | MailboxError] = []
        for event in events:
            try:
                body = event_body(event)
            except base.MailboxError as exc:
                prepared.append(exc)
                continue
            if not send_invitations:
                # Graph mails every attendee it is given: an event written without invitations
                # is written without attendees (docs/exchange-online.md).
                body.pop("attendees", None)
            if event.sync_id:
                body["transactionId"] = event.sync_id  # Graph drops a repeated create
            prepared.append(Call("POST", url, body))
        calls = [p for p in prepared if isinstance(p, Call)]
        # Safe to repeat after a lost answer: the transactionId makes a repeated create a no-op.
        answers = iter(item_results(self.batch(mailbox, calls, idempotent=True), folder_id))
        return [ItemResult(error=p) if isinstance(p, MailboxError) else next(answers) for p in prepared]

    def update_events(
        self,
        mailbox: str,
        updates: Sequence[tuple[RemoteRef, CalendarEvent, Iterable[str]]],
        *,
        send_updates: bool,
    ) -> list[ItemResult]:
        if not updates:
            return []
        series_results: dict[int, ItemResult] = {}
        prepared: list[Call | MailboxError | None] = []
        for index, (ref, event, names) in enumerate(updates):
            names = set(names)
            if names & set(base.OCCURRENCE_FIELDS) and event.recurrence:
                try:
                    series_results[index] = self._update_series(mailbox, ref, event, names, send_updates)
                except base.ItemError as exc:
                    series_results[index] = ItemResult(error=exc)
                prepared.append(None)
                continue
            try:
                body = event_body(event, list(names - set(base.OCCURRENCE_FIELDS)))
            except base.MailboxError as exc:
                prepared.append(exc)
                continue
            if not send_updates:
                body.pop("attendees", None)  # writing attendees through Graph mails them
            prepared.append(
                Call("PATCH", self._event_url(mailbox, ref.item_id), body, if_match(ref.change_key))
            )
        indexes = [i for i, p in enumerate(prepared) if isinstance(p, Call)]
        calls = [prepared[i] for i in indexes]
        answers = self.batch(mailbox, calls)
        stale = [n for n, answer in enumerate(answers) if answer.status == 412]
        if stale:
            # Changed since the engine read it: re-read the version and write the same fields
            # onto it (a field-level merge; the fields not named keep the other side's edits).
            keys = self.master_keys(mailbox, [updates[indexes[n]][0].item_id for n in stale])
            again = []
            for n in stale:
                call = calls[n]
                key = keys.get(updates[indexes[n]][0].item_id)
                again.append(Call(call.method, call.url, call.body, if_match(key or "")))
            for n, answer in zip(stale, self.batch(mailbox, again), strict=True):
                answers[n] = answer
        results: list[ItemResult] = []
        answer_of = dict(zip(indexes, answers, strict=True))
        for i, (ref, _, _) in enumerate(updates):
            if i in series_results:
                results.append(series_results[i])
                continue
            if isinstance(prepared[i], MailboxError):
                results.append(ItemResult(error=prepared[i]))
                continue
            answer = answer_of[i]
            results.append(
                ItemResult(ref=RemoteRef(ref.item_id, change_key_of(answer.body or {}), ref.folder_id))
                if answer.ok
                else ItemResult(error=answer.error())
            )
        return results

    # Occurrences of a series (K10) ----------------------------------------------------------

    def _instances_url(self, mailbox: str, master_id: str, start: datetime, end: datetime) -> str:
        return (
            f"{self._event_url(mailbox, master_id)}/instances?startDateTime={iso_z(start)}&endDateTime={iso_z(end)}&"
            + _query(select="id,type,originalStart,start,end,isAllDay,subject,location", top=PAGE_SIZE)
        )

    def _instances(
        self, mailbox: str, wanted: Sequence[tuple[str, datetime, datetime]]
    ) -> list[list[dict[str, Any]]]:
        """The instances (occurrences and exceptions) of each (master id, from, to), first pages
        in $batch, further pages one by one."""
        headers = {"Prefer": f"{IMMUTABLE_IDS}, {UTC_TIMES}"}
        calls = [Call("GET", self._instances_url(mailbox, m, s, e), None, headers) for m, s, e in wanted]
        out: list[list[dict[str, Any]]] = []
        for answer in self.batch(mailbox, calls):
            if not answer.ok:
                raise answer.error()
            values = list(answer.body.get("value", []))
            next_link = answer.body.get("@odata.nextLink", "")
            if next_link:
                for page in self._pages(mailbox, next_link, headers=headers):
                    values += page.get("value", [])
            out.append(values)
        return out

    def _occurrence_span(self, event: CalendarEvent) -> tuple[datetime, datetime] | None:
        """The original starts whose exceptions are read: from the series' first (a pass that
        ends a series begun in the past rewrites its pattern and lists its past exceptions again,
        K15) to its end, at most a year beyond the calendar window."""
        _, window_end = self.calendar_window()
        limit = window_end + timedelta(days=366)
        last = None
        try:
            for last in base.Series(event.recurrence, event.start, event.time_zone).starts():
                if last > limit:
                    break
        except (ValueError, TypeError, KeyError, zoneinfo.ZoneInfoNotFoundError):
            return None
        if last is None:
            return None
        return event.start, min(last, limit)

    def _read_occurrences(self, mailbox: str, events: Sequence[CalendarEvent]) -> None:
        """Fill each series' modified and deleted occurrences: Graph v1.0 lists them as the
        master's instances (exceptions by type; a deleted occurrence is one the pattern has and
        the instances do not)."""
        spans = {id(e): self._occurrence_span(e) for e in events}
        todo = [e for e in events if spans[id(e)] is not None]
        margin = timedelta(days=7)  # an exception moved a little out of the span still counts
        wanted = [
            (e.ref.item_id, spans[id(e)][0] - margin, spans[id(e)][1] + (e.end - e.start) + margin)
            for e in todo
        ]
        for event, instances in zip(todo, self._instances(mailbox, wanted), strict=True):
            first, last = spans[id(event)]
            present: set[datetime] = set()
            for instance in instances:
                original = parse_iso(instance.get("originalStart"))
                if original is None:
                    continue
                present.add(original)
                if instance.get("type") != "exception" or original < first:
                    continue
                subject = (instance.get("subject") or "").strip()
                location = str((instance.get("location") or {}).get("displayName") or "").strip()
                start, end = instance_span(instance, event)
                event.modified_occurrences.append(
                    base.Occurrence(
                        original_start=original,
                        start=start,
                        end=end,
                        subject=subject if subject != event.subject.strip() else None,
                        location=location if location != event.location.strip() else None,
                    )
                )
            series = base.Series(event.recurrence, event.start, event.time_zone)
            for original in series.starts(after=first):
                if original > last:
                    break
                if original not in present:
                    event.deleted_occurrences.append(original)

    def _update_series(
        self, mailbox: str, ref: RemoteRef, event: CalendarEvent, names: set[str], send: bool
    ) -> ItemResult:
        """A series with occurrence writes (K10): the series' own fields first (a new pattern
        drops every exception), then each listed occurrence, found among the master's instances
        by its original start: deleted (cancelled when meeting messages go out) or rewritten."""
        master_names = names - set(base.OCCURRENCE_FIELDS)
        if master_names:
            (result,) = self.update_events(mailbox, [(ref, event, master_names)], send_updates=send)
            if not result.ok:
                return result
        deletes = list(event.deleted_occurrences) if "deleted_occurrences" in names else []
        modified = list(event.modified_occurrences) if "modified_occurrences" in names else []
        originals = [*deletes, *(o.original_start for o in modified)]
        if originals:
            margin = (event.end - event.start) + timedelta(days=7)
            (instances,) = self._instances(
                mailbox, [(ref.item_id, min(originals) - margin, max(originals) + margin)]
            )
            by_original = {
                parse_iso(i.get("originalStart")): i["id"] for i in instances if i.get("originalStart")
            }
            calls: list[Call] = []
            for original in deletes:
                occurrence_id = by_original.get(original)
                if occurrence_id is None:
                    continue  # already deleted
                url = self._event_url(mailbox, occurrence_id)
                calls.append(Call("POST", f"{url}/cancel", {"comment": ""}) if send else Call("DELETE", url))
            zone_name = event.time_zone or "UTC"
            for occurrence in modified:
                occurrence_id = by_original.get(occurrence.original_start)
                if occurrence_id is None:
                    return ItemResult(
                        error=base.InvalidItem(
                            f"{occurrence.original_start.isoformat()} is not an occurrence of the series"
                        )
                    )
                body = {
                    "start": graph_time(occurrence.start, zone_name),
                    "end": graph_time(occurrence.end, zone_name),
                    "subject": occurrence.subject if occurrence.subject is not None else event.subject,
                    "location": {
                        "displayName": occurrence.location
                        if occurrence.location is not None
                        else event.location
                    },
                }
                calls.append(Call("PATCH", self._event_url(mailbox, occurrence_id), body))
            for answer in self.batch(mailbox, calls, idempotent=True):
                if not answer.ok and answer.status != 404:
                    return ItemResult(error=answer.error())
        keys = self.master_keys(mailbox, [ref.item_id])
        key = keys.get(ref.item_id)
        if key is None:
            return ItemResult(error=base.ItemNotFound("The series is gone."))
        return ItemResult(ref=RemoteRef(ref.item_id, key, ref.folder_id))

    def delete_events(
        self, mailbox: str, refs: Sequence[RemoteRef], *, send_cancellations: bool
    ) -> list[ItemResult]:
        if not refs:
            return []
        if not send_cancellations:
            return self._delete(mailbox, [self._event_url(mailbox, r.item_id) for r in refs], refs)
        # The organizer's copy: cancel (attendees get the cancellation; the event goes to
        # Deleted Items). Not a meeting of this mailbox's organizing: a plain delete.
        answers = self.batch(
            mailbox,
            [Call("POST", f"{self._event_url(mailbox, r.item_id)}/cancel", {"comment": ""}) for r in refs],
            idempotent=True,
        )
        results: list[ItemResult | None] = []
        plain: list[int] = []
        for i, (ref, answer) in enumerate(zip(refs, answers, strict=True)):
            if answer.ok or answer.status == 404:
                results.append(ItemResult(ref=ref))
            elif answer.status == 400:
                results.append(None)
                plain.append(i)
            else:
                results.append(ItemResult(error=answer.error()))
        if plain:
            deleted = self._delete(
                mailbox, [self._event_url(mailbox, refs[i].item_id) for i in plain], [refs[i] for i in plain]
            )
            for i, outcome in zip(plain, deleted, strict=True):
                results[i] = outcome
        return [r for r in results if r is not None]

    # --- Change-notification subscriptions (push over Graph, K14; used by synccore/graph_push.py) ---
    # A subscription belongs to the application, not to a mailbox; its requests are still
    # throttled as the mailbox it watches. Creating one makes Graph call the notification URL
    # (the validation handshake) before it answers, so it may take up to ten seconds more.

    @classmethod
    def events_resource(cls, mailbox: str) -> str:
        """The subscription resource for a mailbox's calendar events (every calendar of it)."""
        return cls.user(mailbox).lstrip("/") + "/events"

    def create_subscription(
        self,
        mailbox: str,
        resource: str,
        *,
        notification_url: str,
        lifecycle_url: str,
        client_state: str,
        expires_at: datetime,
    ) -> Subscription:
        """Subscribe to created / updated / deleted items of a resource; raises MailboxError
        (an unreachable notification URL is an InvalidItem with Graph's ValidationError)."""
        body = {
            "changeType": "created,updated,deleted",
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url,
            "resource": resource,
            "expirationDateTime": iso_z(expires_at),
            "clientState": client_state,
            "latestSupportedTlsVersion": "v1_2",
        }
        answer = self._send(mailbox, "POST", "/subscriptions", body=body, idempotent=False)
        if not answer.ok:
            raise answer.error()
        return _subscription(answer.body, expires_at)

    def renew_subscription(self, mailbox: str, subscription_id: str, expires_at: datetime) -> Subscription:
        """Move a subscription's expiry (PATCH); ItemNotFound when Graph no longer has it."""
        answer = self._send(
            mailbox,
            "PATCH",
            f"/subscriptions/{quote(subscription_id, safe='')}",
            body={"expirationDateTime": iso_z(expires_at)},
        )
        if not answer.ok:
            raise answer.error()
        return _subscription(answer.body, expires_at)

    def reauthorize_subscription(self, mailbox: str, subscription_id: str) -> None:
        """Answer a reauthorizationRequired lifecycle notification."""
        answer = self._send(mailbox, "POST", f"/subscriptions/{quote(subscription_id, safe='')}/reauthorize")
        if not answer.ok:
            raise answer.error()

    def delete_subscription(self, mailbox: str, subscription_id: str) -> None:
        """Remove a subscription; one Graph no longer has is removed already."""
        answer = self._send(mailbox, "DELETE", f"/subscriptions/{quote(subscription_id, safe='')}")
        if not answer.ok and answer.status != 404:
            raise answer.error()

    def close(self) -> None:
        self._http.close()


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return {"error": {"code": "", "message": response.text[:200]}}


@dataclass(frozen=True)
class Subscription:
    """A change-notification subscription as Graph answered it."""

    id: str
    expires_at: datetime


def _subscription(body: Any, asked: datetime) -> Subscription:
    body = body if isinstance(body, dict) else {}
    if not body.get("id"):
        raise base.TransientMailboxError("Microsoft Graph answered a subscription request without its id.")
    # Graph may shorten the expiry it was asked for; what it answers is what counts.
    return Subscription(str(body["id"]), parse_iso(body.get("expirationDateTime")) or asked)


__all__ = [
    "BATCH_LIMIT",
    "CalendarToken",
    "GraphBackend",
    "Subscription",
    "forget_process_state",
    "recurrence_to_rrule",
    "rrule_to_recurrence",
]
