"""``POST /users/{id}/translateExchangeIds``: one item's id in the formats Outlook's APIs use.

As Microsoft documents it (user-translateexchangeids, v1.0): a body of ``inputIds`` (at most 1000,
one source type, items of the one mailbox named in the path), ``sourceIdType`` and
``targetIdType`` among ``entryId``, ``ewsId``, ``immutableEntryId``, ``restId`` and
``restImmutableEntryId``; the answer is a collection of ``convertIdResult`` (``sourceId`` and
``targetId``, or ``errorDetails`` for an id that could not be translated). Only delegated tokens
may call it ("Application: Not supported"): an app-only token is answered 403 ErrorAccessDenied,
and a delegated token only for the signed-in user's own mailbox.

The formats over the simulator's store: ``ewsId`` is the id the EWS front end serves (the store
id), ``restId`` the same in URL-safe base64, ``restImmutableEntryId`` the immutable id the Graph
front end serves with ``Prefer: IdType="ImmutableId"``, so one item has consistent ids across the
two front ends. The binary MAPI formats (``entryId``, ``immutableEntryId``) are the simulator's
own bytes in the documented URL-safe encoding (``+/`` → ``-_``, padding dropped, its length
appended as a digit), not MAPI's: they round-trip, a real PR_ENTRYID does not parse.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from exchange_sim.graph.api import GraphRequest, GraphResponse, ok, route
from exchange_sim.graph.errors import GraphError, bad_request
from exchange_sim.graph.ids import IdMap, rest_id, store_id_from_rest
from exchange_sim.store import StoreError

FORMATS = ("entryId", "ewsId", "immutableEntryId", "restId", "restImmutableEntryId")
MAX_IDS = 1000
ENTRY_MARK = b"\x00\x00\x00\x00SIM-EN:"
IMMUTABLE_ENTRY_MARK = b"\x00\x00\x00\x00SIM-IM:"
APP_ONLY = "Access is denied. Check credentials and try again."


def _url_safe(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    stripped = text.rstrip("=")
    return stripped.replace("+", "-").replace("/", "_") + str(len(text) - len(stripped))


def _from_url_safe(text: str) -> bytes | None:
    if not text or text[-1] not in "012":
        return None
    body = text[:-1].replace("-", "+").replace("_", "/") + "=" * int(text[-1])
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None


def _malformed() -> dict[str, str]:
    return {"code": "ErrorInvalidIdMalformed", "message": "Id is malformed."}


def _not_found() -> dict[str, str]:
    return {"code": "ErrorItemNotFound", "message": "The specified object was not found in the store."}


def to_store_id(ids: IdMap, source: str, value: str) -> str | None:
    """The store id behind ``value`` in format ``source``; None when it is malformed."""
    if source == "ewsId":
        return value
    if source == "restId":
        return store_id_from_rest(value)
    if source == "restImmutableEntryId":
        return ids.store_for_immutable(value)
    raw = _from_url_safe(value)
    if raw is None:
        return None
    if source == "entryId" and raw.startswith(ENTRY_MARK):
        return raw[len(ENTRY_MARK) :].decode("utf-8", "replace")
    if source == "immutableEntryId" and raw.startswith(IMMUTABLE_ENTRY_MARK):
        return ids.store_for_immutable(raw[len(IMMUTABLE_ENTRY_MARK) :].decode("ascii", "replace"))
    return None


def from_store_id(ids: IdMap, target: str, store_id: str) -> str:
    if target == "ewsId":
        return store_id
    if target == "restId":
        return rest_id(store_id)
    if target == "restImmutableEntryId":
        return ids.immutable_for(store_id)
    if target == "entryId":
        return _url_safe(ENTRY_MARK + store_id.encode())
    return _url_safe(IMMUTABLE_ENTRY_MARK + ids.immutable_for(store_id).encode())


def _delegated_user(request: GraphRequest) -> str:
    claims = request.front.directory.claims(request.headers.get("authorization"))
    if claims.get("idtyp") != "user" or not claims.get("upn"):
        raise GraphError(403, "ErrorAccessDenied", APP_ONLY)
    return str(claims["upn"]).lower()


@route("POST", "users/{user}/translateExchangeIds", "graph.users.translateExchangeIds")
def translate_exchange_ids(request: GraphRequest) -> GraphResponse:
    assert request.mailbox is not None
    if _delegated_user(request) != request.mailbox.lower():
        raise GraphError(403, "ErrorAccessDenied", APP_ONLY)
    body = request.json()
    inputs, source, target = body.get("inputIds"), body.get("sourceIdType"), body.get("targetIdType")
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise bad_request("The parameter 'inputIds' must be a collection of strings.")
    if len(inputs) > MAX_IDS:
        raise bad_request(f"The collection 'inputIds' holds {len(inputs)} ids; at most {MAX_IDS} are allowed.")
    for name, value in (("sourceIdType", source), ("targetIdType", target)):
        if value not in FORMATS:
            raise bad_request(f"The parameter '{name}' must be one of {', '.join(FORMATS)}.")
    ids = IdMap.for_store(request.store)
    results: list[dict[str, Any]] = []
    for value in inputs:
        store_id = to_store_id(ids, source, value)
        if store_id is None:
            results.append({"sourceId": value, "errorDetails": _malformed()})
            continue
        try:
            item = request.store.item(store_id)
        except StoreError as err:
            details = _malformed() if err.code == "ErrorInvalidIdMalformed" else _not_found()
            results.append({"sourceId": value, "errorDetails": details})
            continue
        if item.mailbox.lower() != request.mailbox.lower():
            results.append({"sourceId": value, "errorDetails": _not_found()})
            continue
        results.append({"sourceId": value, "targetId": from_store_id(ids, target, store_id)})
    return ok(
        request,
        {"@odata.context": f"{request.base_url}/$metadata#Collection(microsoft.graph.convertIdResult)", "value": results},
    )
