"""Requests refused before any view sees them: a path or query string with a NUL character (no
database stores one) and a body over DATA_UPLOAD_MAX_MEMORY_SIZE. The API and the webhooks
answer 400 with JSON like their other errors, the console with plain text."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, JsonResponse

from syncadmin.api.parsers import too_big_message

_JSON_PREFIXES = ("/api/", "/hooks/")


class MalformedRequestMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        problem = _problem(request)
        if problem:
            return _refusal(request, problem)
        return self.get_response(request)


def _problem(request) -> str:
    if "\x00" in request.path:
        return "The path contains a NUL character."
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in v for v in values):
            return f"The query parameter “{name.replace(chr(0), '?')[:100]}” contains a NUL character."
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return "The Content-Length header is not a number."
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        return too_big_message(limit)
    return ""


def _refusal(request, problem: str) -> HttpResponse:
    if request.path.startswith(_JSON_PREFIXES):
        return JsonResponse({"detail": problem}, status=400)
    return HttpResponse(problem, status=400, content_type="text/plain; charset=utf-8")
