"""The API's JSON parser: a bounded body, checked text (syncadmin.jsonin), every refusal a 400."""

from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from syncadmin import jsonin


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if stream is None:
            raw = b""
        else:
            raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise ParseError(too_big_message(limit))
        try:
            return jsonin.loads(raw)
        except jsonin.BadJson as exc:
            raise ParseError(str(exc)) from exc


def too_big_message(limit: int) -> str:
    return f"The body is larger than {limit:,} bytes: send fewer items per request."
