"""EWS Restriction and SortOrder evaluation against store items and folders."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from exchange_sim.ews.codec import FieldPath, parse_path
from exchange_sim.ews.xmlutil import Element, local, parse_datetime, t
from exchange_sim.store import Folder, Item

Predicate = Callable[[Any], bool]
COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "IsEqualTo": lambda a, b: a == b,
    "IsNotEqualTo": lambda a, b: a != b,
    "IsGreaterThan": lambda a, b: a > b,
    "IsGreaterThanOrEqualTo": lambda a, b: a >= b,
    "IsLessThan": lambda a, b: a < b,
    "IsLessThanOrEqualTo": lambda a, b: a <= b,
}
FOLDER_FIELDS = {
    "DisplayName": lambda f: f.display_name,
    "FolderClass": lambda f: f.folder_class,
    "FolderId": lambda f: f.id,
    "ParentFolderId": lambda f: f.parent_id,
}


def value_of(obj: Item | Folder, path: FieldPath, computed: dict[str, Any] | None = None) -> Any:
    if isinstance(obj, Folder):
        getter = FOLDER_FIELDS.get(path.element or "")
        return getter(obj) if getter else None
    if path.extended is not None:
        return obj.extended.get(path.extended)
    element = path.element or ""
    if element == "ItemId":
        return obj.id
    if element == "ParentFolderId":
        return obj.folder_id
    if element == "DateTimeCreated":
        return obj.created
    if element == "LastModifiedTime":
        return obj.modified
    value = (computed or {}).get(element, obj.props.get(element))
    if path.index is not None:
        value = (value or {}).get(path.index)
        if path.sub is not None:
            value = (value or {}).get(path.sub)
    return value


def coerce(constant: str, sample: Any) -> Any:
    """Compare like Exchange does: the constant takes the property's type."""
    if isinstance(sample, bool):
        # xs:boolean: Exchange takes "1"/"0" (what exchangelib sends) as well as "true"/"false"
        return constant.strip().lower() in {"true", "1"}
    if isinstance(sample, int):
        return int(constant)
    if isinstance(sample, datetime):
        return parse_datetime(constant)
    return constant


def normalized(value: Any) -> Any:
    # Exchange compares strings case-insensitively in restrictions
    return value.lower() if isinstance(value, str) else value


def compile_restriction(elem: Element, computed: Callable[[Any], dict[str, Any]] | None = None) -> Predicate:
    """Turn a t:Restriction's child into a predicate over items (or folders)."""
    name = local(elem)
    if name == "Restriction":
        return compile_restriction(elem[0], computed)
    if name == "And":
        parts = [compile_restriction(c, computed) for c in elem]
        return lambda obj: all(p(obj) for p in parts)
    if name == "Or":
        parts = [compile_restriction(c, computed) for c in elem]
        return lambda obj: any(p(obj) for p in parts)
    if name == "Not":
        inner = compile_restriction(elem[0], computed)
        return lambda obj: not inner(obj)
    path = parse_path(elem[0])
    extra = computed or (lambda obj: {})
    if name == "Exists":
        return lambda obj: value_of(obj, path, extra(obj)) not in (None, "", [], {})
    if name in COMPARATORS:
        constant = elem.find(f"{t('FieldURIOrConstant')}/{t('Constant')}")
        raw = constant.get("Value", "") if constant is not None else ""
        compare = COMPARATORS[name]

        def check(obj: Any) -> bool:
            value = value_of(obj, path, extra(obj))
            if value is None:
                return name == "IsNotEqualTo"
            values = value if isinstance(value, list) else [value]
            try:
                return any(compare(normalized(v), normalized(coerce(raw, v))) for v in values)
            except (ValueError, TypeError):
                return False

        return check
    if name in {"Contains", "Excludes"}:
        return _contains(elem, path, extra)
    raise ValueError(f"Unsupported restriction {name}")


def _contains(elem: Element, path: FieldPath, extra: Callable[[Any], dict[str, Any]]) -> Predicate:
    constant = elem.find(t("Constant"))
    needle = constant.get("Value", "") if constant is not None else ""
    mode = elem.get("ContainmentMode", "Substring")
    loose = elem.get("ContainmentComparison", "Exact") != "Exact"
    if local(elem) == "Excludes":
        bitmask = int(needle, 0) if needle else 0
        return lambda obj: not (int(value_of(obj, path, extra(obj)) or 0) & bitmask)

    def check(obj: Any) -> bool:
        value = value_of(obj, path, extra(obj))
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, str):
                continue
            hay, pin = (v.lower(), needle.lower()) if loose else (v, needle)
            if (
                (mode == "FullString" and hay == pin)
                or (mode == "Prefixed" and hay.startswith(pin))
                or (mode in {"Substring", "PrefixOnWords", "ExactPhrase"} and pin in hay)
            ):
                return True
        return False

    return check


def sort_key_funcs(elem: Element | None) -> list[tuple[FieldPath, bool]]:
    if elem is None:
        return []
    return [(parse_path(order[0]), order.get("Order", "Ascending") == "Descending") for order in elem]


def apply_sort(objs: list[Any], orders: list[tuple[FieldPath, bool]], computed: Callable[[Any], dict[str, Any]] | None = None) -> list[Any]:
    extra = computed or (lambda obj: {})
    for path, descending in reversed(orders):
        present = [o for o in objs if value_of(o, path, extra(o)) not in EMPTY]
        missing = [o for o in objs if value_of(o, path, extra(o)) in EMPTY]
        present.sort(key=lambda o, p=path: _sort_key(value_of(o, p, extra(o))), reverse=descending)
        # An empty value sorts below every other: first ascending, last descending (as Exchange does)
        objs = present + missing if descending else missing + present
    return objs


EMPTY: tuple[Any, ...] = (None, "", [], {})


def _sort_key(value: Any) -> Any:
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return normalized(value)


__all__ = ["apply_sort", "compile_restriction", "sort_key_funcs", "value_of"]
