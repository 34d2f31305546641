"""JSON from outside (API bodies, Graph's webhooks), refused before anything reads it when it is
not text a database can store: lone surrogates, NUL characters, nesting deeper than any shape we
take, numbers that are not finite. Each refusal says where in the body the problem is."""

from __future__ import annotations

import json
import math
import re
from typing import Any

# The deepest shape the API takes is a list of activities → exceptions → an object: 4 levels.
MAX_DEPTH = 20
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


class BadJson(ValueError):
    """The body is not JSON this server takes; the message says why (and where)."""


def loads(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson(f"The body is not UTF-8 text (byte {exc.start}).") from exc
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError as exc:
        raise BadJson(f"The body is nested more than {MAX_DEPTH} levels deep.") from exc
    except ValueError as exc:
        raise BadJson(f"The body is not valid JSON: {exc}") from exc
    check(value)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check(value: Any) -> None:
    """BadJson unless every string is storable text, every number finite and the nesting shallow."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, float) and not math.isfinite(item):
            raise BadJson(f"{_where(path)} is not a finite number.")
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise BadJson(f"{_where(path)} is nested more than {MAX_DEPTH} levels deep.")
            if isinstance(item, dict):
                for key, inner in item.items():
                    inner_path = f"{path}.{key}" if path else str(key)
                    _check_text(key, inner_path)
                    stack.append((inner, inner_path, depth + 1))
            else:
                stack.extend((inner, f"{path}[{i}]", depth + 1) for i, inner in enumerate(item))


def _check_text(text: str, path: str) -> None:
    found = _BAD_TEXT.search(text)
    if found is None:
        return
    what = "a NUL character" if found.group() == "\x00" else "a lone surrogate (not valid Unicode)"
    raise BadJson(f"{_where(path)} contains {what}.")


def _where(path: str) -> str:
    # The path is the client's own text: shown only once it is known to be clean.
    if _BAD_TEXT.search(path):
        path = _BAD_TEXT.sub("?", path)
    return f"“{path[:200]}”" if path else "The body"
