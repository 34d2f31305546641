"""Validation of SOAP Header and Body children against Microsoft's messages.xsd / types.xsd.

There is no SOAP envelope schema in the folder, so each EWS child is validated on its own.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from exchange_sim.ews.xmlutil import SOAP, M, T

_CACHE: dict[str, tuple[etree.XMLSchema, threading.Lock]] = {}
_CACHE_LOCK = threading.Lock()


def default_schema_dir() -> Path | None:
    """EWS_SCHEMA_DIR, else ../shared/ews-schema next to the project, if it holds messages.xsd."""
    raw = os.environ.get("EWS_SCHEMA_DIR")
    candidates = [Path(raw)] if raw else []
    candidates.append(Path(__file__).resolve().parent.parent.parent / "shared" / "ews-schema")
    for path in candidates:
        if (path / "messages.xsd").exists():
            return path
    return None


@dataclass(frozen=True)
class Violation:
    direction: str  # request | response
    operation: str
    element: str
    message: str

    def __str__(self) -> str:
        return f"{self.direction} {self.operation} <{self.element}>: {self.message}"


class SchemaValidator:
    def __init__(self, schema_dir: Path) -> None:
        key = str(schema_dir.resolve())
        with _CACHE_LOCK:
            if key not in _CACHE:
                # one lock per schema object: libxml2 schema validation is not safe across threads
                _CACHE[key] = (etree.XMLSchema(etree.parse(str(schema_dir / "messages.xsd"))), threading.Lock())
            self._schema, self._lock = _CACHE[key]

    def validate(self, envelope: etree._Element, direction: str, operation: str) -> list[Violation]:
        found: list[Violation] = []
        for part in ("Header", "Body"):
            container = envelope.find(f"{{{SOAP}}}{part}")
            if container is None:
                continue
            for child in container:
                if not isinstance(child.tag, str) or etree.QName(child).namespace not in {M, T}:
                    continue
                # validated where it stands: lxml validates an element of a larger document as the
                # root of its own (without the copy of it that was most of a large request's validation)
                with self._lock:
                    ok = self._schema.validate(child)
                    errors = list(self._schema.error_log)
                if not ok:
                    message = "; ".join(f"line {e.line}: {e.message}" for e in errors[:3])
                    found.append(Violation(direction, operation, etree.QName(child).localname, message))
        return found
