"""singleValueExtendedProperties: Graph's ids for named/tagged MAPI properties <-> the store's ExtendedKey.

Graph writes an extended property id as ``"{type} {guid} Name {name}"``, ``"{type} {guid} Id 0x{id}"`` or
``"{type} 0x{tag}"``; EWS names the same property by PropertySetId (or a DistinguishedPropertySetId, which is
a well-known GUID) and PropertyName / PropertyId / PropertyTag. Both reach the same stored value.
"""

from __future__ import annotations

import re
from typing import Any

from exchange_sim.graph.errors import GraphError
from exchange_sim.store import ExtendedKey, Item

# EWS distinguished property sets and their GUIDs ([MS-OXPROPS] 1.3.2)
DISTINGUISHED_SETS = {
    "PublicStrings": "00020329-0000-0000-c000-000000000046",
    "Common": "00062008-0000-0000-c000-000000000046",
    "Address": "00062004-0000-0000-c000-000000000046",
    "Appointment": "00062002-0000-0000-c000-000000000046",
    "Meeting": "6ed8da90-450b-101b-98da-00aa003f1305",
    "Task": "00062003-0000-0000-c000-000000000046",
    "InternetHeaders": "00020386-0000-0000-c000-000000000046",
    "UnifiedMessaging": "4442858e-a9e3-4e80-b900-317a210cc15b",
    "Sharing": "00062040-0000-0000-c000-000000000046",
    "CalendarAssistant": "11000e07-b51b-40d6-af21-caa85edab1d0",
}
TYPES = {
    "string": "String",
    "integer": "Integer",
    "boolean": "Boolean",
    "systemtime": "SystemTime",
    "binary": "Binary",
    "long": "Long",
    "double": "Double",
    "short": "Short",
    "float": "Float",
    "currency": "Currency",
    "clsid": "CLSID",
    "applicationtime": "ApplicationTime",
    "object": "Object",
}
_NAMED = re.compile(r"^\s*(\w+)\s+\{?([0-9a-fA-F-]{36})\}?\s+(Name|Id)\s+(.+?)\s*$", re.IGNORECASE)
_TAGGED = re.compile(r"^\s*(\w+)\s+(0x[0-9a-fA-F]{1,4})\s*$")


def invalid(graph_id: str) -> GraphError:
    return GraphError(400, "ErrorInvalidProperty", f"The extended property id '{graph_id}' is not valid.")


def key_from_graph_id(graph_id: str) -> ExtendedKey:
    named = _NAMED.match(graph_id)
    if named:
        kind, guid, form, rest = named.groups()
        prop_type = TYPES.get(kind.lower())
        if prop_type is None:
            raise invalid(graph_id)
        if form.lower() == "name":
            return ExtendedKey.create(prop_type, property_set_id=guid, name=rest)
        try:
            return ExtendedKey.create(prop_type, property_set_id=guid, prop_id=rest)
        except ValueError:
            raise invalid(graph_id) from None
    tagged = _TAGGED.match(graph_id)
    if tagged and tagged.group(1).lower() in TYPES:
        return ExtendedKey.create(TYPES[tagged.group(1).lower()], tag=tagged.group(2))
    raise invalid(graph_id)


def graph_id_for(key: ExtendedKey) -> str | None:
    """The Graph id of a stored key (None for what Graph cannot name)."""
    guid = key.property_set_id or (DISTINGUISHED_SETS.get(key.distinguished_set or "") if key.distinguished_set else None)
    if key.tag is not None:
        return f"{key.prop_type} 0x{key.tag:04x}"
    if guid is None:
        return None
    if key.name is not None:
        return f"{key.prop_type} {{{guid.lower()}}} Name {key.name}"
    if key.prop_id is not None:
        return f"{key.prop_type} {{{guid.lower()}}} Id 0x{key.prop_id:04x}"
    return None


def normalized(graph_id: str) -> str:
    """An id in the form Graph answers with (so ids given in any case compare equal)."""
    return graph_id_for(key_from_graph_id(graph_id)) or graph_id


def stored_key(item: Item, graph_id: str) -> ExtendedKey | None:
    """The key under which the item holds this property (EWS may have used a distinguished set name)."""
    wanted = normalized(graph_id).lower()
    return next((key for key in item.extended if (graph_id_for(key) or "").lower() == wanted), None)


def render(item: Item, only: list[str] | None) -> list[dict[str, Any]]:
    """singleValueExtendedProperties of an item; `only`: the ids asked for by $expand (None: all)."""
    wanted = {normalized(i).lower() for i in only} if only is not None else None
    out = []
    for key, value in item.extended.items():
        graph_id = graph_id_for(key)
        if graph_id is None or isinstance(value, list):
            continue
        if wanted is not None and graph_id.lower() not in wanted:
            continue
        out.append({"id": graph_id, "value": _text(value)})
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def parse(item: Item | None, values: Any) -> dict[ExtendedKey, Any]:
    """The ``singleValueExtendedProperties`` of a request body as store keys (existing keys kept as they are)."""
    if not isinstance(values, list):
        raise GraphError(400, "RequestBodyRead", "singleValueExtendedProperties must be an array.")
    out: dict[ExtendedKey, Any] = {}
    for entry in values:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or "value" not in entry:
            raise GraphError(400, "RequestBodyRead", "An extended property needs an id and a value.")
        key = (stored_key(item, entry["id"]) if item is not None else None) or key_from_graph_id(entry["id"])
        out[key] = entry["value"] if entry["value"] is None else str(entry["value"])
    return out
