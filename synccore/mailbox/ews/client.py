"""exchangelib, as every EWS operation uses it: request counting, the retry policy and the
translation of exchangelib's errors into the one ``MailboxError`` family.

Choices that matter (see DESIGN §7):
- an explicit service endpoint and server version: no autodiscover or version-probe round trips;
- every bulk call inspects its per-item results (exchangelib returns errors in the list);
- requests are counted by an HTTP adapter, per thread, for run records and tests.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import requests
import requests.adapters
from exchangelib import Build, FaultTolerance
from exchangelib import errors as ews_errors
from exchangelib.items import ID_ONLY, SAVE_ONLY, SEND_TO_NONE
from exchangelib.properties import EWSElement, ItemId
from exchangelib.protocol import BaseProtocol
from exchangelib.services import CreateItem, GetItem, SyncFolderItems
from exchangelib.services.common import shape_element
from exchangelib.util import TNS, create_element
from lxml import etree

from synccore.mailbox import base
from synccore.mailbox.base import ItemResult, MailboxError, RemoteRef
from synccore.mailbox.counting import RequestCounter

SERVER_BUILD = Build(15, 1, 2507, 6)  # Exchange 2016 CU; every supported server speaks its schema
SYNC_PAGE = 512  # the largest MaxChangesReturned EWS allows
FIND_PAGE = 1000  # the largest IndexedPageItemView EWS allows

# --- Request counting -------------------------------------------------------------------------

_requests = RequestCounter()
requests_sent = _requests.sent  # every HTTP request this thread sent, retries included
_CHUNK = 64 * 1024


class _ReadResponse(requests.Response):
    """A response whose body, once read whole, is handed out in 64 KiB chunks: exchangelib parses
    every answer from ``iter_content()``, whose default of one byte per chunk cost as much CPU as
    the parsing itself. A streamed answer (streaming notifications) keeps requests' own way."""

    def iter_content(self, chunk_size: int | None = 1, decode_unicode: bool = False):
        if self._content_consumed and isinstance(self._content, bytes) and not decode_unicode:
            return requests.utils.iter_slices(self._content, _CHUNK)
        return super().iter_content(chunk_size, decode_unicode)


class _EwsAdapter(_requests.adapter_class()):
    def build_response(self, req, resp):
        response = super().build_response(req, resp)
        response.__class__ = _ReadResponse
        return response


BaseProtocol.HTTP_ADAPTER_CLS = _EwsAdapter


# --- Retry policy ---------------------------------------------------------------------------


class SyncRetryPolicy(FaultTolerance):
    """exchangelib's FaultTolerance, except that a 401 is not retried for minutes.

    FaultTolerance treats every 401 as throttling (some EWS servers answer 401 under load) and
    retries until max_wait, so a wrong password would stall every pass. Here a short burst of
    401s is retried after a second; the third 401 within half a minute is a credentials error.
    """

    UNAUTHORIZED_LIMIT = 3
    UNAUTHORIZED_WINDOW_S = 30.0

    def __init__(self, max_wait: float) -> None:
        super().__init__(max_wait=max_wait)
        self._recent_401s: list[float] = []

    def raise_response_errors(self, response):
        if response.status_code == 401:
            now = time.monotonic()
            self._recent_401s = [t for t in self._recent_401s if now - t < self.UNAUTHORIZED_WINDOW_S] + [now]
            if len(self._recent_401s) >= self.UNAUTHORIZED_LIMIT:
                raise ews_errors.UnauthorizedError(f"Invalid credentials for {response.url}")
            raise ews_errors.ErrorServerBusy("HTTP 401, retried once more", back_off=1)
        return super().raise_response_errors(response)


# --- Errors -----------------------------------------------------------------------------------

_PERMANENT_ITEM_ERRORS = (
    ews_errors.ErrorInvalidPropertyRequest,
    ews_errors.ErrorInvalidPropertySet,
    ews_errors.ErrorInvalidValueForProperty,
    ews_errors.ErrorPropertyUpdate,
    ews_errors.ErrorSchemaValidation,
    ews_errors.ErrorInvalidRequest,
    ews_errors.ErrorCorruptData,
)
_NOT_FOUND = (ews_errors.ErrorItemNotFound, ews_errors.ErrorFolderNotFound)


def translate(exc: Exception) -> MailboxError:
    """Map an exchangelib / transport exception to the backend error family."""
    if isinstance(exc, MailboxError):
        return exc
    name = type(exc).__name__
    message = f"{name}: {exc}" if str(exc) else name
    if isinstance(exc, ews_errors.UnauthorizedError):
        return base.AuthenticationFailed(
            f"Exchange refused the service account's credentials ({message}).", code=name
        )
    if isinstance(exc, ews_errors.ErrorNonExistentMailbox):
        return base.MailboxNotFound(f"Exchange has no such mailbox ({message}).", code=name)
    if isinstance(exc, ews_errors.ErrorImpersonateUserDenied | ews_errors.ErrorAccessDenied):
        return base.AccessDenied(
            f"The service account may not open this mailbox; check the impersonation or delegate rights ({message}).",
            code=name,
        )
    if isinstance(exc, ews_errors.ErrorInvalidSyncStateData):
        return base.InvalidSyncToken(message, code=name)
    if isinstance(exc, ews_errors.ErrorServerBusy):
        wait = (exc.back_off or 0) or None
        return base.Throttled(f"Exchange is busy ({message}).", retry_after=wait, code=name)
    if isinstance(exc, ews_errors.ErrorIrresolvableConflict):
        return base.StaleChangeKey(message, code=name)
    if isinstance(exc, _NOT_FOUND):
        return base.ItemNotFound(message, code=name)
    if isinstance(exc, _PERMANENT_ITEM_ERRORS) or name.startswith("ErrorPropertyValueTooLong"):
        return base.InvalidItem(message, code=name)
    if isinstance(exc, ValueError | TypeError):
        # exchangelib validates values before sending (e.g. a malformed address or URI).
        return base.InvalidItem(message, code=name)
    if isinstance(
        exc,
        ews_errors.RateLimitError
        | ews_errors.ErrorTimeoutExpired
        | ews_errors.TransportError
        | ews_errors.ErrorInternalServerTransientError
        | ews_errors.ErrorMailboxMoveInProgress
        | ews_errors.ErrorMailboxStoreUnavailable
        | ews_errors.ErrorExceededConnectionCount
        | ews_errors.ErrorTooManyObjectsOpened
        | ews_errors.CASError
        | requests.RequestException
        | ConnectionError
        | TimeoutError,
    ):
        return base.TransientMailboxError(f"Exchange is not answering normally ({message}).", code=name)
    if isinstance(exc, ews_errors.ResponseMessageError | ews_errors.EWSError):
        return base.TransientMailboxError(message, code=name)
    raise exc


V = TypeVar("V")
# What building an exchangelib item from a value may raise: bad input of that one item.
BAD_INPUT = (ValueError, TypeError, KeyError)


def bad_input(exc: Exception) -> MailboxError:
    """A value refused before sending (by exchangelib or the translation): that item's bad input."""
    if isinstance(exc, ValueError | TypeError):
        return translate(exc)
    return base.InvalidItem(f"{type(exc).__name__}: {exc}", code=type(exc).__name__)


def bulk_create(
    call: Callable[..., Any],
    account: Any,
    folder: Any,
    values: Sequence[V],
    build: Callable[[V], Any],
    *,
    folder_id: str,
    chunk_size: int,
) -> list[ItemResult]:
    """Create items in batches (``CreateItem``, ``chunk_size`` per request); a value ``build``
    cannot turn into an item is that item's error, the others are written. In input order."""
    items: list[Any] = []
    for value in values:
        try:
            item = build(value)
            if not isinstance(item, Serialized):
                serialize_once(item, account.version)  # what exchangelib refuses fails this item only
            items.append(item)
        except BAD_INPUT as exc:
            items.append(exc)
    valid = [item for item in items if not isinstance(item, Exception)]
    results = iter(call(create_items, account, folder, valid, chunk_size=chunk_size))
    return [
        ItemResult(error=bad_input(item)) if isinstance(item, Exception) else item_result(next(results), folder_id)
        for item in items
    ]


def bulk_update(
    call: Callable[..., Any],
    account: Any,
    updates: Sequence[tuple[RemoteRef, V, Iterable[str]]],
    build: Callable[[V, Iterable[str]], tuple[Any, list[str]]],
    *,
    chunk_size: int,
) -> list[ItemResult]:
    """Write the named fields of each value onto its item (``UpdateItem`` in batches), overwriting
    what the server holds (AlwaysOverwrite: the engine decided what wins before writing). ``build``
    gives the item and its exchangelib field names; its bad input is that item's error. In order."""
    prepared: list[tuple[Any, list[str]] | Exception] = []
    for ref, value, names in updates:
        try:
            item, fieldnames = build(value, names)
            item.id, item.changekey = ref.item_id, ref.change_key or None
            item.to_xml(version=account.version)  # what exchangelib refuses fails this item only
            prepared.append((item, fieldnames))
        except BAD_INPUT as exc:
            prepared.append(exc)
    valid = [p for p in prepared if not isinstance(p, Exception)]
    results = iter(
        call(account.bulk_update, items=valid, conflict_resolution="AlwaysOverwrite", chunk_size=chunk_size)
    )
    return [
        ItemResult(error=bad_input(p)) if isinstance(p, Exception) else item_result(next(results), ref.folder_id)
        for (ref, _, _), p in zip(updates, prepared, strict=True)
    ]


class Serialized(EWSElement):
    """An item to create whose XML is already built (fastxml.py): exchangelib's CreateItem takes
    it for an item (it asks only for its account and its element)."""

    __slots__ = ("_element", "account")

    def __init__(self, element: Any, account: Any) -> None:  # no EWSElement fields to set
        self._element = element
        self.account = account

    def to_xml(self, version: Any) -> Any:
        return self._element


# --- Services whose answers are read for ids only ------------------------------------------------
#
# exchangelib's own services, requests, retries, throttling back-off and per-item error handling
# included (EWSService._get_elements); only the reading of each answered item differs: its ItemId
# instead of a whole exchangelib item built field by field (issue 17: ~13 % of a calendar pass).

_ITEM_ID = ItemId.response_tag()


def _ids(elem: Any) -> tuple[str | None, str | None]:
    found = elem.find(_ITEM_ID)
    return (None, None) if found is None else (found.get("Id"), found.get("ChangeKey"))


class _IdOnlyCreateItem(CreateItem):
    def _elem_to_obj(self, elem: Any) -> Any:
        return elem if isinstance(elem, bool) else _ids(elem)


def create_items(
    account: Any, folder: Any, items: Sequence[Any], *, chunk_size: int, send_meeting_invitations: str = SEND_TO_NONE
) -> list[Any]:
    """``account.bulk_create`` answering (id, change key) per item, or its error, in order."""
    if not items:
        return []
    service = _IdOnlyCreateItem(account=account, chunk_size=chunk_size)
    return list(
        service.call(
            items=items,
            folder=folder,
            message_disposition=SAVE_ONLY,
            send_meeting_invitations=send_meeting_invitations,
        )
    )


class _IdOnlySyncFolderItems(SyncFolderItems):
    def _elem_to_obj(self, elem: Any) -> tuple[str, str | None, str | None]:
        change_type = self.change_types_map[elem.tag]
        if change_type in (self.DELETE, self.READ_FLAG_CHANGE):
            return (change_type, *_ids(elem))
        return (change_type, *_ids(elem[0]))  # the item's element, whatever its type


def sync_item_ids(account: Any, folder: Any, sync_state: str | None, page_size: int) -> tuple[list[Any], str]:
    """``folder.sync_items(only_fields=[])`` read for ids: every change since ``sync_state`` as
    (change type, item id, change key) and the new sync state. Pages as exchangelib pages (until
    IncludesLastItemInRange, or a sync state that does not move)."""
    service = _IdOnlySyncFolderItems(account=account)
    changes: list[Any] = []
    while True:
        for change in service.call(
            folder=folder,
            shape=ID_ONLY,
            additional_fields=set(),
            sync_state=sync_state,
            ignore=None,
            max_changes_returned=page_size,
            sync_scope=None,
        ):
            if isinstance(change, Exception):
                raise change
            changes.append(change)
        if service.sync_state == sync_state:
            break
        sync_state = service.sync_state
        if service.includes_last_item_in_range:
            break
    return changes, service.sync_state or ""


class _ReadGetItem(GetItem):
    """GetItem whose answered items are read by ``read`` where it can (None: it cannot), else by
    exchangelib as before; the request's shape is built once per set of fields."""

    def __init__(self, *args: Any, read: Callable[[Any], Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read = read

    def _elem_to_obj(self, elem: Any) -> Any:
        found = self._read(elem)
        return found if found is not None else super()._elem_to_obj(elem)

    def get_payload(self, items: Any, additional_fields: Any, shape: str) -> Any:
        payload = create_element(f"m:{self.SERVICE_NAME}")
        payload.append(copy.deepcopy(_shape(additional_fields, shape, self.account.version)))
        ids = create_element("m:ItemIds")
        for item_id, change_key in items:
            element = etree.SubElement(ids, _ITEM_ID_REQUEST, Id=item_id)
            if change_key:
                element.set("ChangeKey", change_key)
        payload.append(ids)
        return payload


_ITEM_ID_REQUEST = f"{{{TNS}}}ItemId"
_shapes: dict[tuple[Any, ...], Any] = {}


def _shape(additional_fields: Any, shape: str, version: Any) -> Any:
    # exchangelib serializes each of the fields at every request (~0.3 ms per item read): once here.
    key = (tuple(sorted(f.path for f in additional_fields)), shape, version.build)
    found = _shapes.get(key)
    if found is None:
        found = _shapes[key] = shape_element(
            tag="m:ItemShape", shape=shape, additional_fields=additional_fields, version=version
        )
    return found


def read_items(
    account: Any,
    ids: Sequence[tuple[str, str | None]],
    fields: Iterable[Any],
    read: Callable[[Any], Any],
    *,
    chunk_size: int,
) -> list[Any]:
    """``account.fetch(ids, only_fields=fields)`` whose items ``read`` reads where it can (its
    value) and exchangelib reads otherwise (the item); a per-item error is that item's exception.
    In order. ``fields`` are FieldPaths (exchangelib's fetch asks for the same, without
    validating them on the mailbox's root folder: one GetFolder less per mailbox)."""
    if not ids:
        return []
    service = _ReadGetItem(account=account, chunk_size=chunk_size, read=read)
    return list(service.call(items=ids, additional_fields=set(fields), shape=ID_ONLY))


def serialize_once(item: Any, version: Any) -> None:
    """Serialize an item to be created before its batch is sent, so that a value exchangelib
    refuses (ValueError, TypeError) fails this item only; the batch then sends this same XML
    instead of cleaning and serializing the item a second time (half the CPU of a create)."""
    element = item.to_xml(version=version)
    item.to_xml = lambda version, _element=element: _element


def item_result(value: Any, folder_id: str = "") -> ItemResult:
    if isinstance(value, Exception):
        return ItemResult(error=translate(value))
    if isinstance(value, tuple):
        item_id, change_key = value
    else:
        item_id, change_key = value.id, value.changekey
    return ItemResult(ref=RemoteRef(item_id, change_key or "", folder_id))
