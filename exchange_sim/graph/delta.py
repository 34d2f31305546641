"""Delta queries: ``contactFolders/{id}/contacts/delta`` (and ``calendarView/delta``, see calendar_delta).

A round starts without a token and pages through @odata.nextLink ($skiptoken) to an @odata.deltaLink
($deltatoken); the next round starts from the deltaLink. The query parameters of the first request
($select) are baked into the tokens. A token the simulator cannot read, or one made before
``sim.graph.invalidate_delta_tokens()``, answers ``410 Gone`` with ``SyncStateNotFound``: the client must
start a new round (a full resync). Removed items come as ``{"id": ..., "@removed": {"reason": "deleted"}}``.

Contacts delta tokens carry the store's (signed) sync state, so they survive a simulator restart with
``--state``; page size is ``Prefer: odata.maxpagesize`` (at most 200), else ``sim.graph.page_size``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from typing import TYPE_CHECKING, Any

from exchange_sim.graph.api import GraphRequest, GraphResponse, ok, route
from exchange_sim.graph.contacts import CONTACT_PROPS, READ, contact_json, resolve_folder
from exchange_sim.graph.errors import GraphError
from exchange_sim.graph.odata import apply_select, check_select
from exchange_sim.store import Item, StoreError

if TYPE_CHECKING:
    from exchange_sim.graph.frontend import GraphFrontEnd

MAX_DELTA_PAGE = 200


def gone() -> GraphError:
    return GraphError(410, "SyncStateNotFound", "The sync state generation is not found.")


class DeltaTokens:
    """Signs and reads delta/skip tokens; keeps the calendar rounds' server-side state."""

    def __init__(self, front: GraphFrontEnd) -> None:
        self.front = front
        self._lock = threading.Lock()
        self._secret = front.sim.store.secret.encode()
        self._generation = uuid.uuid4().hex[:8]
        self.rounds: dict[str, Any] = {}  # calendarView delta state, by round id

    def invalidate(self) -> None:
        """Every token handed out so far answers 410 Gone."""
        with self._lock:
            self._generation = uuid.uuid4().hex[:8]
            self.rounds.clear()

    def encode(self, payload: dict[str, Any]) -> str:
        data = json.dumps({**payload, "g": self._generation}, separators=(",", ":")).encode()
        sig = hmac.new(self._secret, data, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(data).decode().rstrip("=") + "." + base64.urlsafe_b64encode(sig).decode().rstrip("=")

    def decode(self, token: str, kind: str) -> dict[str, Any]:
        try:
            data_text, sig_text = token.split(".")
            data = base64.urlsafe_b64decode(data_text + "=" * (-len(data_text) % 4))
            sig = base64.urlsafe_b64decode(sig_text + "=" * (-len(sig_text) % 4))
            payload = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise gone() from None
        expected = hmac.new(self._secret, data, hashlib.sha256).digest()[:12]
        if not hmac.compare_digest(sig, expected) or payload.get("g") != self._generation or payload.get("k") != kind:
            raise gone()
        return payload


def page_size(request: GraphRequest) -> int:
    wanted = request.prefer.max_page_size or request.front.page_size
    size = max(1, min(wanted, MAX_DELTA_PAGE))
    request.prefer.applied.append(f"odata.maxpagesize={size}")
    return size


def token_of(request: GraphRequest) -> str | None:
    return request.query.get("$deltatoken") or request.query.get("$skiptoken")


def removed(graph_id: str, type_name: str) -> dict[str, Any]:
    return {"@odata.type": f"#microsoft.graph.{type_name}", "id": graph_id, "@removed": {"reason": "deleted"}}


def delta_answer(request: GraphRequest, values: list[dict[str, Any]], token: str, done: bool, type_name: str) -> GraphResponse:
    link = request.url(request.path, **{"$deltatoken" if done else "$skiptoken": token})
    body = {
        "@odata.context": f"{request.base_url}/$metadata#Collection({type_name})",
        "@odata.deltaLink" if done else "@odata.nextLink": link,
        "value": values,
    }
    return ok(request, body)


def _contacts_delta(request: GraphRequest, folder_ref: str) -> GraphResponse:
    front = request.front
    folder = resolve_folder(request, folder_ref)
    request.query.refuse("$filter", "$expand", "$orderby", "$search", "$top", where="contacts delta")
    token = token_of(request)
    if token is not None:
        if front.sim.faults.take("invalid_sync_state", request.operation, request.mailbox):
            raise gone()
        payload = front.deltas.decode(token, "contacts")
        if payload.get("f") != folder.id:
            raise gone()
        state, select = payload["s"], payload.get("sel")
    else:
        check_select(request.query.select, CONTACT_PROPS, "contact")
        state, select = None, request.query.select
    try:
        changes, new_state, done = request.store.sync_folder_items(folder.id, state, page_size(request))
    except StoreError as err:
        if err.code == "ErrorInvalidSyncStateData":
            raise gone() from None
        raise
    values: list[dict[str, Any]] = []
    for op, change in changes:
        if op == "Delete":
            assert isinstance(change, str)
            values.append(removed(request.graph_id(change), "contact"))
        else:
            assert isinstance(change, Item)
            if change.kind == "Contact":
                values.append(apply_select(contact_json(request, change), select))
    next_token = front.deltas.encode({"k": "contacts", "f": folder.id, "s": new_state, "sel": select})
    return delta_answer(request, values, next_token, done, "contact")


@route("GET", "users/{user}/contactFolders/{folder}/contacts/delta", "graph.contacts.delta", roles=READ)
def contacts_delta(request: GraphRequest) -> GraphResponse:
    return _contacts_delta(request, request.params["folder"])


@route("GET", "users/{user}/contacts/delta", "graph.contacts.delta", roles=READ)
def default_contacts_delta(request: GraphRequest) -> GraphResponse:
    return _contacts_delta(request, "contacts")
