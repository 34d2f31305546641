"""Requests under /v1.0: routing, the per-mailbox pipeline (access policy, faults, throttling) and answers.

Resource modules register handlers with ``@route("GET", "users/{user}/contacts/{id}", "graph.contacts.get")``.
A handler takes a `GraphRequest` and returns a `GraphResponse` (or raises `GraphError`). The same
`dispatch` serves plain requests and $batch sub-requests.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode

from exchange_sim.graph.auth import ACCESS_POLICY_TEXT, App
from exchange_sim.graph.errors import GraphError, bad_request, error_body, not_found_segment
from exchange_sim.graph.ids import user_id
from exchange_sim.graph.odata import Prefer, Query
from exchange_sim.graph.throttle import throttled
from exchange_sim.store import Item, StoreError

if TYPE_CHECKING:
    from exchange_sim.graph.frontend import GraphFrontEnd

log = logging.getLogger("exchange_sim.graph")
URL_SAFE = "$,()'=:@"
JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"


class Headers(dict[str, str]):
    """Case-insensitive request headers (stored lower-cased)."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__()
        for key, value in dict(items).items():
            self[key.lower()] = value

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class GraphResponse:
    status: int
    body: Any = None  # dict (JSON) or None
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        # check_circular off: a body is a tree the handlers just built (the same text, faster)
        return b"" if self.body is None else json.dumps(self.body, separators=(",", ":"), check_circular=False).encode()


@dataclass
class GraphRequest:
    front: GraphFrontEnd
    method: str
    path: str  # below /v1.0, without the query
    query: Query
    headers: Headers
    body: bytes
    app: App | None = None
    params: dict[str, str] = field(default_factory=dict)
    operation: str = "graph.unknown"
    mailbox: str | None = None  # the address the request acts on, when it names a user
    prefer: Prefer = field(default_factory=Prefer)
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    base_url: str = ""  # https://HOST:PORT/v1.0

    @property
    def store(self) -> Any:
        return self.front.sim.store

    def json(self) -> dict[str, Any]:
        if not self.body:
            raise bad_request("Empty Payload. JSON content expected.")
        try:
            data = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise bad_request(
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format."
            ) from None
        if not isinstance(data, dict):
            raise bad_request("The request payload must be a JSON object.")
        return data

    # ids in the requested type
    def graph_id(self, store_id: str, item: Item | None = None) -> str:
        return self.front.ids.graph_id(store_id, self.prefer.immutable_ids, item)

    def store_id(self, graph_id: str) -> str:
        return self.front.ids.resolve(graph_id)

    def url(self, path: str, **query: str) -> str:
        text = f"{self.base_url}/{path.lstrip('/')}"
        return f"{text}?{urlencode(query, safe=URL_SAFE)}" if query else text

    def self_url(self, **changes: Any) -> str:
        """This request's URL with some query parameters changed (None drops one); for nextLinks."""
        params = dict(self.query.raw)
        for key, value in changes.items():
            params = {k: v for k, v in params.items() if k.lower() != key.lower()}
            if value is not None:
                params[key] = str(value)
        return self.url(self.path, **params)


Handler = Callable[[GraphRequest], GraphResponse]


@dataclass
class Route:
    method: str
    parts: tuple[str, ...]
    operation: str
    handler: Handler
    locked: bool  # run under the store lock (off for handlers that call out, e.g. webhook validation)
    roles: tuple[str, ...]


ROUTES: list[Route] = []


def route(method: str, pattern: str, operation: str, *, roles: tuple[str, ...] = (), locked: bool = True) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        ROUTES.append(Route(method, tuple(pattern.split("/")), operation, func, locked, roles))
        return func

    return register


def split_path(path: str) -> list[str]:
    return list(_split_path(path))


@functools.lru_cache(maxsize=4096)
def _split_path(path: str) -> tuple[str, ...]:
    # cached: a client sends the same paths again and again (a $batch of creates one per event)
    segments = []
    for raw in path.split("/"):
        segment = unquote(raw)
        if not segment:
            continue
        lowered = segment.lower()
        if lowered.startswith("microsoft.graph."):
            segment = segment[len("microsoft.graph.") :]
        if segment.endswith("()"):
            segment = segment[:-2]
        segments.append(segment)
    return tuple(segments)


# ROUTES by their number of segments, in registration order, each part as (parameter name, None) or
# (None, lower-case literal): a request no longer tries the hundreds of routes one by one.
_by_length: dict[int, list[tuple[Route, tuple[tuple[str | None, str | None], ...]]]] = {}
_indexed = 0


def _routes_of_length(length: int) -> list[tuple[Route, tuple[tuple[str | None, str | None], ...]]]:
    global _by_length, _indexed
    if _indexed != len(ROUTES):  # routes are registered at import; index again if more came
        index: dict[int, list[tuple[Route, tuple[tuple[str | None, str | None], ...]]]] = {}
        count = len(ROUTES)
        for candidate in ROUTES[:count]:
            parts = tuple((p[1:-1], None) if p.startswith("{") else (None, p.lower()) for p in candidate.parts)
            index.setdefault(len(parts), []).append((candidate, parts))
        _by_length, _indexed = index, count
    return _by_length.get(length, [])


def match(method: str, segments: list[str]) -> tuple[Route, dict[str, str]] | None:
    """The route for this path: the one with the most literal segments (``contacts/delta`` beats ``contacts/{id}``)."""
    # looked up once per method, path and set of routes (a 405 is not kept: it is raised again);
    # each request gets parameters of its own
    found = _match(method, tuple(segments), len(ROUTES))
    return None if found is None else (found[0], dict(found[1]))


@functools.lru_cache(maxsize=4096)
def _match(method: str, segments: tuple[str, ...], _routes: int) -> tuple[Route, dict[str, str]] | None:
    best: tuple[int, Route, dict[str, str]] | None = None
    lowered = [segment.lower() for segment in segments]
    routes = _routes_of_length(len(segments))
    # this method's routes first; the others only tell a wrong method (405) from an unknown path
    for candidate, parts in routes:
        if candidate.method != method:
            continue
        params: dict[str, str] = {}
        literals = 0
        for (param, literal), segment, low in zip(parts, segments, lowered, strict=True):
            if param is not None:
                params[param] = segment
            elif literal != low:
                break
            else:
                literals += 1
        else:
            if best is None or literals > best[0]:
                best = (literals, candidate, params)
    if best is not None:
        return best[1], best[2]
    for _, parts in routes:
        if all(param is not None or literal == low for (param, literal), low in zip(parts, lowered, strict=True)):
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
    return None


def error_response(err: GraphError, request_id: str, client_request_id: str | None = None) -> GraphResponse:
    return GraphResponse(err.status, error_body(err.code, err.message, request_id, client_request_id), dict(err.headers))


def prepare(front: GraphFrontEnd, method: str, target: str, headers: Headers, body: bytes, base_url: str) -> tuple[GraphRequest, Route | None]:
    """Parse and route a request (no auth yet). Raises GraphError for an unknown path."""
    path, _, query_text = target.partition("?")
    request = GraphRequest(
        front=front,
        method=method,
        path=path,
        query=Query(raw={}),
        headers=headers,
        body=body,
        base_url=base_url,
    )
    request.query = Query.parse(dict(parse_qsl(query_text, keep_blank_values=True)))
    request.prefer = Prefer.parse([v for k, v in headers.items() if k == "prefer"])
    segments = split_path(path)
    if segments and segments[0].lower() == "me":
        raise bad_request("/me request is only valid with delegated authentication flow.")
    found = match(method, segments)
    if found is None:
        raise not_found_segment(segments[-1] if segments else "")
    candidate, params = found
    request.params = params
    request.operation = candidate.operation
    if "user" in params:
        request.mailbox = front.resolve_user(params["user"])
    return request, candidate


def run(request: GraphRequest, candidate: Route, *, sub_request: bool = False) -> GraphResponse:
    """The per-mailbox part of the pipeline and the handler. Errors come back as error responses."""
    front = request.front
    sim = front.sim
    app = request.app
    assert app is not None
    mailbox = request.mailbox
    slot = False
    try:
        if mailbox is not None and not app.may_access(mailbox):
            raise GraphError(403, "ErrorAccessDenied", ACCESS_POLICY_TEXT)
        if candidate.roles:
            front.directory.role_check(app, *candidate.roles)
        fault = sim.faults.take("throttled", request.operation, mailbox)
        if fault is not None:
            raise throttled("Application is over its MailboxConcurrency limit.", fault.params.get("retry_after", 1))
        busy = sim.faults.take("server_busy", request.operation, mailbox)
        if busy is not None:
            raise throttled("Application is over its MailboxConcurrency limit.", busy.params.get("back_off_ms", 1000) / 1000)
        if sub_request:
            unavailable = sim.faults.take("http_503", request.operation, mailbox, exact=True)
            if unavailable is not None:
                retry = unavailable.params.get("retry_after")
                raise GraphError(503, "ServiceUnavailable", "The service is temporarily unavailable.", {"Retry-After": str(retry)} if retry else {})
        if mailbox is not None:
            front.throttling.enter(app.client_id, mailbox)
            slot = True
        if candidate.locked:
            with sim.store.lock:
                return candidate.handler(request)
        return candidate.handler(request)
    except GraphError as err:
        return error_response(err, request.request_id, request.headers.get("client-request-id"))
    except StoreError as err:
        return error_response(GraphError.from_store(err), request.request_id, request.headers.get("client-request-id"))
    except Exception as exc:  # a simulator bug: answer 500 like Graph, and let the test fail
        log.exception("internal error in %s", request.operation)
        sim.internal_errors.append(f"{request.operation}: {type(exc).__name__}: {exc}")
        return error_response(GraphError(500, "InternalServerError", f"An internal server error occurred: {exc}"), request.request_id)
    finally:
        if slot and mailbox is not None:
            front.throttling.leave(app.client_id, mailbox)


def latency(front: GraphFrontEnd) -> None:
    if front.sim.faults.latency_ms:
        time.sleep(front.sim.faults.latency_ms / 1000)


# ---- small helpers shared by the resource modules -----------------------------------------------------
def collection(request: GraphRequest, entities: list[dict[str, Any]], context: str, *, page_size: int | None = None) -> GraphResponse:
    """A page of a collection with $top/$skip and an @odata.nextLink carrying $skip, as Outlook answers."""
    from exchange_sim.graph.odata import DEFAULT_PAGE, order

    entities = order(entities, request.query.orderby)
    size = request.query.top or request.prefer.max_page_size or page_size or DEFAULT_PAGE
    start = request.query.skip
    page = entities[start : start + size]
    body: dict[str, Any] = {"@odata.context": f"{request.base_url}/$metadata#{context}"}
    body["value"] = page
    if start + size < len(entities):
        body["@odata.nextLink"] = request.self_url(**{"$skip": start + size, "$top": size if request.query.top else None})
    return ok(request, body)


def ok(request: GraphRequest, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> GraphResponse:
    out = dict(headers or {})
    if request.prefer.applied:
        out["Preference-Applied"] = ", ".join(request.prefer.applied)
    return GraphResponse(status, body, out)


def no_content() -> GraphResponse:
    return GraphResponse(204, None, {})


def etag(changekey: str) -> str:
    return f'W/"{changekey}"'


def check_if_match(request: GraphRequest, changekey: str) -> None:
    """If-Match with a stale change key: 412, as Exchange's ErrorIrresolvableConflict."""
    wanted = request.headers.get("if-match")
    if not wanted or wanted.strip() == "*":
        return
    tags = [t.strip() for t in wanted.split(",")]
    keys = {re.sub(r'^(W/)?"(.*)"$', r"\2", t) for t in tags}
    if changekey not in keys:
        raise GraphError(
            412,
            "ErrorIrresolvableConflict",
            "The send or update operation could not be performed because the change key passed in the request does "
            "not match the current change key for the item.",
        )


def user_json(front: GraphFrontEnd, address: str) -> dict[str, Any]:
    mailbox = front.sim.store.mailbox(address)
    given, _, surname = mailbox.display_name.partition(" ")
    return {
        "businessPhones": [],
        "displayName": mailbox.display_name,
        "givenName": given or None,
        "jobTitle": None,
        "mail": mailbox.address,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": surname or None,
        "userPrincipalName": mailbox.address,
        "id": user_id(mailbox.address),
    }


@route("GET", "users/{user}", "graph.users.get", roles=("User.Read.All", "User.ReadBasic.All", "Directory.Read.All"))
def get_user(request: GraphRequest) -> GraphResponse:
    assert request.mailbox is not None
    body = {"@odata.context": f"{request.base_url}/$metadata#users/$entity", **user_json(request.front, request.mailbox)}
    return ok(request, body)


@route("GET", "users", "graph.users.list", roles=("User.Read.All", "User.ReadBasic.All", "Directory.Read.All"))
def list_users(request: GraphRequest) -> GraphResponse:
    users = [user_json(request.front, m) for m in request.front.sim.mailboxes()]
    return collection(request, users, "users", page_size=100)
