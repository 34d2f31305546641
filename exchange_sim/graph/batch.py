"""JSON batching: ``POST /v1.0/$batch`` with at most 20 requests, each answered on its own.

Sub-requests run one at a time in dependency order (``dependsOn``; a request whose dependency failed
answers 424), which keeps within Outlook's 4 requests at a time per mailbox; each goes through the
mailbox pipeline on its own (application access policy, faults, throttling -> its own 429 with
Retry-After). Answers come back in request order, which Graph allows (clients match them by id).
The simulated latency is the HTTP request's (server.py), once per $batch: see the package's deviations.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from exchange_sim.graph import api
from exchange_sim.graph.api import GraphResponse, Headers, error_response
from exchange_sim.graph.auth import App
from exchange_sim.graph.errors import GraphError, bad_request

if TYPE_CHECKING:
    from exchange_sim.graph.frontend import GraphFrontEnd

MAX_REQUESTS = 20
SUB_CONTENT_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"


def _parse(body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        raise bad_request("Invalid batch payload format.") from None
    requests = data.get("requests") if isinstance(data, dict) else None
    if not isinstance(requests, list):
        raise bad_request("Invalid batch payload format.")
    if len(requests) > MAX_REQUESTS:
        raise bad_request(f"Number of batch requests inside batch exceeds the limit of {MAX_REQUESTS}.")
    seen: set[str] = set()
    for entry in requests:
        if not isinstance(entry, dict) or not entry.get("id") or not entry.get("method") or not entry.get("url"):
            raise bad_request("Invalid batch payload format: every request needs an id, a method and a url.")
        key = str(entry["id"]).lower()
        if key in seen:
            raise bad_request(f"Batch request ids must be unique: '{entry['id']}' appears twice.")
        seen.add(key)
    ids = {str(e["id"]).lower() for e in requests}
    for entry in requests:
        for dep in entry.get("dependsOn") or []:
            if str(dep).lower() not in ids:
                raise bad_request(f"Request '{entry['id']}' depends on '{dep}', which is not in the batch.")
    return requests


def _order(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Requests in an order that runs each after what it depends on (a cycle is a malformed batch)."""
    by_id = {str(e["id"]).lower(): e for e in requests}
    done: list[dict[str, Any]] = []
    state: dict[str, str] = {}

    def visit(key: str) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            raise bad_request("The dependsOn of the batch requests form a cycle.")
        state[key] = "visiting"
        for dep in by_id[key].get("dependsOn") or []:
            visit(str(dep).lower())
        state[key] = "done"
        done.append(by_id[key])

    for entry in requests:
        visit(str(entry["id"]).lower())
    return done


def _sub_body(entry: dict[str, Any], headers: Headers) -> bytes:
    if "body" not in entry or entry["body"] is None:
        return b""
    if not headers.get("content-type"):
        raise bad_request("Content-Type header must be specified when a request body is present.")
    body = entry["body"]
    if isinstance(body, str):
        try:
            return base64.b64decode(body)
        except ValueError:
            raise bad_request("The body of a batch request must be JSON or base64.") from None
    return json.dumps(body).encode()


def _answer(entry_id: str, response: GraphResponse) -> dict[str, Any]:
    headers = {**response.headers}
    if response.body is not None:
        headers.setdefault("Content-Type", SUB_CONTENT_TYPE)
    out: dict[str, Any] = {"id": entry_id, "status": response.status, "headers": headers}
    if response.body is not None:
        out["body"] = response.body
    return out


def run_batch(front: GraphFrontEnd, app: App, body: bytes, headers: Headers, base_url: str) -> tuple[GraphResponse, list[str]]:
    """(the batch answer, the mailboxes its sub-requests addressed)."""
    parsed = _parse(body)
    requests = _order(parsed)
    answers: dict[str, dict[str, Any]] = {}
    failed: set[str] = set()
    mailboxes: list[str] = []
    sim = front.sim
    for entry in requests:
        entry_id = str(entry["id"])
        method = str(entry["method"]).upper()
        url = str(entry["url"])
        sub_headers = Headers(entry.get("headers") or {})
        request_id = headers.get("client-request-id") or ""
        operation, mailbox = "graph.unknown", None
        if any(str(dep).lower() in failed for dep in entry.get("dependsOn") or []):
            response = error_response(GraphError(424, "FailedDependency", "The request depends on a request that failed."), request_id)
        else:
            try:
                if url.lower().startswith(("http://", "https://")):
                    raise bad_request("Invalid request URL: the url of a batch request must be relative, e.g. /users/{id}/contacts.")
                target = url if url.startswith("/") else f"/{url}"
                request, candidate = api.prepare(front, method, target, sub_headers, _sub_body(entry, sub_headers), base_url)
                request.app = app
                operation, mailbox = request.operation, request.mailbox
                response = api.run(request, candidate, sub_request=True)
            except GraphError as err:
                response = error_response(err, request_id)
        sim.counters.count_sub_request(operation, mailbox)
        if mailbox:
            mailboxes.append(mailbox)
        if response.status >= 400:
            failed.add(entry_id.lower())
        answers[entry_id] = _answer(entry_id, response)
    original_order = [answers[str(e["id"])] for e in parsed]
    return GraphResponse(200, {"responses": original_order}, {}), mailboxes
