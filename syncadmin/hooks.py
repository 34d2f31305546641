"""Webhooks that Microsoft Graph calls (push over Graph, K14): thin edges over the runtime service (`synccore.runtime.push.graph` does the work).

Graph calls them without a session or a CSRF token, so they are CSRF-exempt and need no login;
what they accept is checked instead (each notification's clientState against the subscription it
names). They answer at once: 200 text/plain with the token for the validation handshake, 202 for
notifications, whatever they held (a forged or unknown notification is logged and ignored, and
answered like any other, so the answer tells a caller nothing). Passes run on the workers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from synccore.runtime import service as runtime

# Graph's validation tokens are a sentence and a GUID; anything much longer is not one of them.
MAX_VALIDATION_TOKEN = 1024


def _validation_answer(token: str) -> HttpResponse:
    if len(token) > MAX_VALIDATION_TOKEN:
        return HttpResponseBadRequest("", content_type="text/plain")
    # Echoed as plain text (never HTML: nosniff is on), as Graph asks.
    return HttpResponse(token, content_type="text/plain; charset=utf-8")


def _entries(request: HttpRequest) -> list[Any] | None:
    try:
        body = json.loads(request.body or b"")
    except ValueError:
        return None
    entries = body.get("value") if isinstance(body, dict) else None
    return entries if isinstance(entries, list) else None


def _webhook(request: HttpRequest, receive: Callable[[list[Any]], None]) -> HttpResponse:
    token = request.GET.get("validationToken")
    if token is not None:
        return _validation_answer(token)
    entries = _entries(request)
    if entries is None:
        return HttpResponseBadRequest("", content_type="text/plain")
    receive(entries)
    return HttpResponse(status=202)


@csrf_exempt
@require_POST
def graph_notifications(request: HttpRequest) -> HttpResponse:
    return _webhook(request, runtime.receive_graph_notifications)


@csrf_exempt
@require_POST
def graph_lifecycle(request: HttpRequest) -> HttpResponse:
    return _webhook(request, runtime.receive_graph_lifecycle)
