"""XML names and small builders for EWS SOAP messages."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, date, datetime, tzinfo

from lxml import etree

# The zone of the request's TimeZoneContext header: naive times in the request are in it.
REQUEST_ZONE: ContextVar[tzinfo] = ContextVar("request_zone", default=UTC)

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
NSMAP = {"s": SOAP, "m": M, "t": T}

Element = etree._Element


def m(name: str) -> str:
    return f"{{{M}}}{name}"


def t(name: str) -> str:
    return f"{{{T}}}{name}"


def local(elem: Element) -> str:
    tag = elem.tag
    if type(tag) is str:  # "{namespace}name" or "name": read without a QName object per element
        return tag.rpartition("}")[2]
    return etree.QName(elem).localname  # a comment or processing instruction: as QName takes it


_SubElement = etree.SubElement


def sub(parent: Element, tag: str, text: str | None = None, **attrs: str) -> Element:
    # most elements of an answer carry no attribute: no attribute map is built for them (the
    # answers' builders call this tens of times per item)
    child = _SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None}) if attrs else _SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def child(parent: Element, tag: str) -> Element | None:
    return parent.find(tag)


def text_of(parent: Element, tag: str, default: str | None = None) -> str | None:
    found = parent.find(tag)
    if found is None:
        return default
    return found.text or ""


def format_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    if utc.year < 1000:  # strftime does not pad such a year, isoformat does: keep strftime's text
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return utc.isoformat()[:19] + "Z"  # the same text, several times faster than strftime


def parse_datetime(text: str) -> datetime:
    """xs:dateTime as clients send it ('Z', an offset, or naive in the TimeZoneContext zone), or an xs:date."""
    raw = text.strip()
    if raw.endswith("Z"):
        raw = raw[:-1] + "+00:00"
    if len(raw) == 10:
        day = date.fromisoformat(raw)
        return datetime(day.year, day.month, day.day, tzinfo=REQUEST_ZONE.get()).astimezone(UTC)
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None:
        value = value.replace(tzinfo=REQUEST_ZONE.get())
    return value.astimezone(UTC)


def to_bytes(elem: Element) -> bytes:
    return etree.tostring(elem, xml_declaration=True, encoding="utf-8")
