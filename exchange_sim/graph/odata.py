"""OData query options as Graph reads them: $select, $filter, $expand, $top/$skip, $orderby, Prefer.

$filter is parsed by odata-query (its grammar, not our own) and evaluated here over the JSON an entity
is rendered to, so a filter sees exactly the property names and values a client reads.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from odata_query import ast
from odata_query.exceptions import ODataException
from odata_query.grammar import ODataLexer, ODataParser

from exchange_sim.graph.errors import GraphError, bad_request

KNOWN_OPTIONS = {"$select", "$filter", "$expand", "$top", "$skip", "$orderby", "$count", "$skiptoken", "$deltatoken", "$search", "$format"}
MAX_TOP = 1000
DEFAULT_PAGE = 10


@dataclass
class Prefer:
    """What the ``Prefer`` header(s) asked for."""

    immutable_ids: bool = False
    max_page_size: int | None = None
    time_zone: str | None = None
    text_body: bool = False
    applied: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, values: list[str]) -> Prefer:
        # a client sends the same few Prefer headers with every request: each is split once
        immutable_ids, max_page_size, time_zone, text_body = _prefer_parts(tuple(values))
        prefer = cls(immutable_ids, max_page_size, time_zone, text_body)
        if prefer.immutable_ids:
            prefer.applied.append('IdType="ImmutableId"')
        if prefer.time_zone:
            prefer.applied.append(f'outlook.timezone="{prefer.time_zone}"')
        if prefer.text_body:
            prefer.applied.append('outlook.body-content-type="text"')
        return prefer


@functools.lru_cache(maxsize=256)
def _prefer_parts(values: tuple[str, ...]) -> tuple[bool, int | None, str | None, bool]:
    """(immutable ids, max page size, time zone, text body) of Prefer header values."""
    prefer = Prefer()
    for value in values:
        for part in re.split(r",(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", value):
            name, _, raw = part.strip().partition("=")
            arg = raw.strip().strip('"')
            key = name.strip().lower()
            if key == "idtype" and arg.lower() == "immutableid":
                prefer.immutable_ids = True
            elif key == "odata.maxpagesize" and arg.isdigit():
                prefer.max_page_size = int(arg)
            elif key == "outlook.timezone" and arg:
                prefer.time_zone = arg
            elif key == "outlook.body-content-type":
                prefer.text_body = arg.lower() == "text"
    return prefer.immutable_ids, prefer.max_page_size, prefer.time_zone, prefer.text_body


@dataclass
class Query:
    raw: dict[str, str]
    select: list[str] | None = None
    filter: str | None = None
    expand: str | None = None
    top: int | None = None
    skip: int = 0
    orderby: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, str]) -> Query:
        params = {k: v for k, v in raw.items()}
        lowered = {k.lower(): v for k, v in params.items()}
        for key in lowered:
            if key.startswith("$") and key not in KNOWN_OPTIONS:
                raise bad_request(f"Query option '{key}' is not allowed.")
        query = cls(raw=params)
        if lowered.get("$select"):
            query.select = [s.strip() for s in lowered["$select"].split(",") if s.strip()]
        query.filter = lowered.get("$filter") or None
        query.expand = lowered.get("$expand") or None
        query.orderby = lowered.get("$orderby") or None
        if "$top" in lowered:
            query.top = _non_negative(lowered["$top"], "$top")
            if query.top > MAX_TOP:
                raise bad_request(f"The value of $top must be at most {MAX_TOP}.", "ErrorInvalidUrlQuery")
        if "$skip" in lowered:
            query.skip = _non_negative(lowered["$skip"], "$skip")
        return query

    def get(self, name: str) -> str | None:
        """A plain query parameter (startDateTime...), case-insensitively."""
        for key, value in self.raw.items():
            if key.lower() == name.lower():
                return value
        return None

    def refuse(self, *options: str, where: str) -> None:
        for option in options:
            if self.get(option) is not None:
                raise bad_request(f"The query parameter '{option}' is not supported with {where}.", "ErrorInvalidUrlQuery")


def _non_negative(text: str, name: str) -> int:
    if not text.strip().isdigit():
        raise bad_request(f"Invalid value '{text}' for query option '{name}'.")
    return int(text)


# ---- $select ------------------------------------------------------------------------------------------
def check_select(select: list[str] | None, known: set[str], type_name: str) -> None:
    for name in select or []:
        if name not in known:
            raise GraphError(
                400, "RequestBroker--ParseUri", f"Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."
            )


def apply_select(entity: dict[str, Any], select: list[str] | None, always: tuple[str, ...] = ("id",)) -> dict[str, Any]:
    if not select:
        return entity
    keep = set(select) | set(always)
    return {k: v for k, v in entity.items() if k in keep or k.startswith("@odata.")}


# ---- $expand=singleValueExtendedProperties($filter=id eq '...') -------------------------------------------
_EXPAND = re.compile(r"^\s*singleValueExtendedProperties\s*(?:\((.*)\))?\s*$", re.IGNORECASE | re.DOTALL)


def parse_expand(text: str | None) -> list[str] | None:
    """The extended property ids to expand: [] none asked, None all of them (no filter)."""
    if not text:
        return []
    # a client sends the same $expand with every request: parse it once (the filter parser is slow)
    ids = _parse_expand(text)
    return None if ids is None else list(ids)


@functools.lru_cache(maxsize=256)
def _parse_expand(text: str) -> tuple[str, ...] | None:
    match = _EXPAND.match(text)
    if not match:
        raise bad_request(f"Parsing OData Select and Expand failed: Could not find a property named '{text.split('(')[0].strip()}'.")
    inner = (match.group(1) or "").strip()
    if not inner:
        return None
    name, _, clause = inner.partition("=")
    if name.strip().lower() != "$filter":
        raise bad_request("Only $filter is supported inside $expand=singleValueExtendedProperties(...).")
    node = parse_filter(clause)
    ids: list[str] = []

    def collect(n: ast._Node) -> None:
        if isinstance(n, ast.BoolOp) and isinstance(n.op, ast.Or):
            collect(n.left)
            collect(n.right)
        elif (
            isinstance(n, ast.Compare)
            and isinstance(n.comparator, ast.Eq)
            and isinstance(n.left, ast.Identifier)
            and n.left.name.lower() == "id"
            and isinstance(n.right, ast.String)
        ):
            ids.append(n.right.val)
        else:
            raise bad_request("The $filter of singleValueExtendedProperties supports only \"id eq '...'\" (or several with or).")

    collect(node)
    return tuple(ids)


# ---- $filter ------------------------------------------------------------------------------------------
_LAMBDA = re.compile(r"/\s*(any|all)\s*\(", re.IGNORECASE)


def parse_filter(text: str) -> ast._Node:
    # Graph's own documentation writes the lambda operators as Any/All; the OData grammar wants lower case
    normalized = _LAMBDA.sub(lambda m: f"/{m.group(1).lower()}(", text)
    try:
        return ODataParser().parse(ODataLexer().tokenize(normalized))
    except ODataException as exc:
        raise bad_request(f"Invalid filter clause: {exc}") from None
    except Exception as exc:  # the grammar raises plain errors on some malformed input
        raise bad_request(f"Invalid filter clause: {exc}") from None


def filter_roots(text: str | None) -> set[str]:
    """The entity properties a $filter reads (so a caller can render only those)."""
    if not text:
        return set()
    roots: set[str] = set()

    def walk(node: Any, scope: frozenset[str]) -> None:
        if isinstance(node, ast.Identifier):
            if node.name not in scope:
                roots.add(node.name)
        elif isinstance(node, ast.CollectionLambda):
            walk(node.owner, scope)
            if node.lambda_ is not None:
                walk(node.lambda_.expression, scope | {node.lambda_.identifier.name})
        elif isinstance(node, ast.Call):
            for arg in node.args:
                walk(arg, scope)
        elif isinstance(node, ast._Node):
            for value in node.__dict__.values():
                for child in value if isinstance(value, list) else [value]:
                    if isinstance(child, ast._Node):
                        walk(child, scope)

    walk(parse_filter(text), frozenset())
    return roots


def compile_filter(text: str | None) -> Callable[[dict[str, Any]], bool] | None:
    if not text:
        return None
    node = parse_filter(text)

    def predicate(entity: dict[str, Any]) -> bool:
        return bool(_eval(node, entity, {}))

    return predicate


def _lookup(container: Any, name: str) -> Any:
    if not isinstance(container, dict):
        return None
    if name in container:
        return container[name]
    lowered = name.lower()
    return next((v for k, v in container.items() if k.lower() == lowered), None)


def _literal(node: ast._Node) -> Any:
    if isinstance(node, ast.String):
        return node.val
    if isinstance(node, ast.Integer):
        return int(node.val)
    if isinstance(node, ast.Float):
        return float(node.val)
    if isinstance(node, ast.Boolean):
        return node.val.lower() == "true"
    if isinstance(node, ast.Null):
        return None
    if isinstance(node, ast.DateTime):
        return _as_datetime(node.val)
    if isinstance(node, ast.Date):
        return date.fromisoformat(node.val)
    if isinstance(node, ast.GUID):
        return node.val
    if isinstance(node, ast.List):
        return [_literal(v) for v in node.val]
    raise bad_request(f"Unsupported literal in filter: {node}")


def _as_datetime(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _eval(node: ast._Node, entity: dict[str, Any], scope: dict[str, Any]) -> Any:
    if isinstance(node, ast.Identifier):
        if node.name in scope:
            return scope[node.name]
        return _lookup(entity, node.name)
    if isinstance(node, ast.Attribute):
        return _lookup(_eval(node.owner, entity, scope), node.attr)
    if isinstance(node, ast.Compare):
        return _compare(node.comparator, _eval(node.left, entity, scope), _eval(node.right, entity, scope))
    if isinstance(node, ast.BoolOp):
        left = _eval(node.left, entity, scope)
        if isinstance(node.op, ast.And):
            return bool(left) and bool(_eval(node.right, entity, scope))
        return bool(left) or bool(_eval(node.right, entity, scope))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _eval(node.operand, entity, scope)
    if isinstance(node, ast.Call):
        return _call(node.func.name.lower(), [_eval(a, entity, scope) for a in node.args])
    if isinstance(node, ast.CollectionLambda):
        items = _eval(node.owner, entity, scope) or []
        if node.lambda_ is None:
            return bool(items)
        name = node.lambda_.identifier.name
        results = (bool(_eval(node.lambda_.expression, entity, {**scope, name: item})) for item in items)
        return any(results) if isinstance(node.operator, ast.Any) else all(results)
    return _literal(node)


def _normalize(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(left, datetime) and isinstance(right, str):
        right = _as_datetime(right)
    elif isinstance(right, datetime) and isinstance(left, str):
        left = _as_datetime(left)
    if isinstance(left, str) and isinstance(right, str):
        return left.lower(), right.lower()  # Exchange compares strings case-insensitively
    return left, right


def _compare(comparator: ast._Comparator, left: Any, right: Any) -> bool:
    if isinstance(comparator, ast.In):
        values = right if isinstance(right, list) else [right]
        return any(_compare(ast.Eq(), left, v) for v in values)
    left, right = _normalize(left, right)
    if isinstance(comparator, ast.Eq):
        return left == right
    if isinstance(comparator, ast.NotEq):
        return left != right
    if left is None or right is None:
        return False
    try:
        if isinstance(comparator, ast.Lt):
            return left < right
        if isinstance(comparator, ast.LtE):
            return left <= right
        if isinstance(comparator, ast.Gt):
            return left > right
        if isinstance(comparator, ast.GtE):
            return left >= right
    except TypeError:
        return False
    raise bad_request(f"Unsupported comparison {comparator}")


def _call(name: str, args: list[Any]) -> Any:
    text = [a.lower() if isinstance(a, str) else a for a in args]
    if name == "startswith" and len(text) == 2:
        return isinstance(text[0], str) and text[0].startswith(text[1] or "")
    if name == "endswith" and len(text) == 2:
        return isinstance(text[0], str) and text[0].endswith(text[1] or "")
    if name == "contains" and len(text) == 2:
        return isinstance(text[0], str) and (text[1] or "") in text[0]
    if name == "tolower" and len(args) == 1:
        return args[0].lower() if isinstance(args[0], str) else args[0]
    if name == "toupper" and len(args) == 1:
        return args[0].upper() if isinstance(args[0], str) else args[0]
    raise bad_request(f"The function '{name}' is not supported in $filter.")


# ---- $orderby -----------------------------------------------------------------------------------------
def order(entities: list[dict[str, Any]], orderby: str | None) -> list[dict[str, Any]]:
    if not orderby:
        return entities
    for clause in reversed([c.strip() for c in orderby.split(",") if c.strip()]):
        path, _, direction = clause.partition(" ")

        def key(entity: dict[str, Any], path: str = path) -> tuple[bool, Any]:
            value: Any = entity
            for part in path.split("/"):
                value = _lookup(value, part)
            if isinstance(value, str):
                value = value.lower()
            # null sorts before every value (OData; the store's EWS sort does the same)
            empty = value in (None, "", [])
            return (not empty, value if not empty else "")

        entities = sorted(entities, key=key, reverse=direction.strip().lower() == "desc")
    return entities
