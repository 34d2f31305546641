"""Webhooks that Microsoft Graph calls (push over Graph, K14): thin edges over the runtime service (`synccore.runtime.push.graph` does the work).

Graph calls them without a session or a CSRF token, so they are CSRF-exempt and need no login;
what they accept is checked instead (each notification's clientState against the subscription it
names). They answer at once: 200 text/plain with the token for the validation handshake, 202 for
notifications, whatever they held (a forged or unknown notification is logged and ignored, and
answered like any other, so the answer tells a caller nothing). Passes run on the workers.

Nobody has to log in to call them, so what they read is bounded before anything else happens: the
body (MAX_BODY), its nesting and text (`syncadmin.jsonin`), the number of entries (MAX_ENTRIES),
and each entry's subscription id (a GUID's characters) — a malformed entry is dropped before any
query. Whatever one request had ignored is logged once, as one line, not once per entry.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from syncadmin import jsonin
from synccore.runtime import service as runtime

log = logging.getLogger(__name__)

# Graph's validation tokens are a sentence and a GUID; anything much longer is not one of them.
MAX_VALIDATION_TOKEN = 1024
# A notification is well under 1 KB; Graph batches a few per POST, never thousands.
MAX_BODY = 256 * 1024
MAX_ENTRIES = 200
# Subscription ids are GUIDs; clientState is at most 128 characters (Graph's own limit).
_SUBSCRIPTION_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
MAX_CLIENT_STATE = 128


def _validation_answer(token: str) -> HttpResponse:
    if len(token) > MAX_VALIDATION_TOKEN:
        return HttpResponseBadRequest("", content_type="text/plain")
    # Echoed as plain text (never HTML: nosniff is on), as Graph asks.
    return HttpResponse(token, content_type="text/plain; charset=utf-8")


def _entries(request: HttpRequest) -> list[Any] | None:
    raw = request.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        return None
    try:
        body = jsonin.loads(raw)
    except jsonin.BadJson:
        return None
    entries = body.get("value") if isinstance(body, dict) else None
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        return None
    return entries


def _well_formed(entry: Any) -> bool:
    """An entry worth looking up: a subscription id of a GUID's characters, a short clientState."""
    if not isinstance(entry, dict):
        return False
    sub_id, state = entry.get("subscriptionId"), entry.get("clientState")
    return (
        isinstance(sub_id, str)
        and _SUBSCRIPTION_ID.fullmatch(sub_id) is not None
        and (state is None or (isinstance(state, str) and len(state) <= MAX_CLIENT_STATE))
    )


def _webhook(request: HttpRequest, receive: Callable[[list[Any]], None], what: str) -> HttpResponse:
    token = request.GET.get("validationToken")
    if token is not None:
        return _validation_answer(token)
    entries = _entries(request)
    if entries is None:
        return HttpResponseBadRequest("", content_type="text/plain")
    usable = [entry for entry in entries if _well_formed(entry)]
    with _one_line_per_request(what, len(entries), len(entries) - len(usable)):
        if usable:
            receive(usable)
    return HttpResponse(status=202)


@csrf_exempt
@require_POST
def graph_notifications(request: HttpRequest) -> HttpResponse:
    return _webhook(request, runtime.receive_graph_notifications, "notification")


@csrf_exempt
@require_POST
def graph_lifecycle(request: HttpRequest) -> HttpResponse:
    return _webhook(request, runtime.receive_graph_lifecycle, "lifecycle notification")


# --- one log line per request ------------------------------------------------------------------


class _HeldPerThread(logging.Filter):
    """Holds back the Graph push module's per-entry lines on a thread that is answering a webhook."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        held = getattr(self.local, "held", None)
        if held is None:
            return True
        held.append(record)
        return False


# The logger of the module receiving the notifications (synccore/runtime/push/graph.py).
GRAPH_PUSH_LOGGER = "synccore.runtime.push.graph"
_held = _HeldPerThread()
logging.getLogger(GRAPH_PUSH_LOGGER).addFilter(_held)


@contextmanager
def _one_line_per_request(what: str, total: int, malformed: int) -> Iterator[None]:
    _held.local.held = []
    try:
        yield
    finally:
        records, _held.local.held = _held.local.held, None
        _summarise(what, total, malformed, records)


def _summarise(what: str, total: int, malformed: int, records: list[logging.LogRecord]) -> None:
    ignored = [r for r in records if r.levelno >= logging.WARNING]
    if not malformed and not ignored:
        for record in records:  # informational lines (an unknown lifecycle event) pass as they were
            log.log(record.levelno, record.getMessage())
        return
    example = ignored[0].getMessage() if ignored else "malformed entries"
    log.warning(
        "Graph %s request: %d of %d entries ignored (%d malformed); e.g. %s",
        what,
        malformed + len(ignored),
        total,
        malformed,
        example,
    )
