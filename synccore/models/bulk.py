"""Rows written in bulk by the passes: many saves as one statement, in one transaction."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.operations import BaseDatabaseOperations

READ_BACK = 900  # keys read back per query (SQLite takes at most 999 parameters in old builds)

# --- A row's values as Django's save() hands them to the driver, at a fraction of its CPU ------
#
# Django prepares each value of each row through several calls per field (get_db_prep_save,
# get_db_prep_value, get_prep_value, to_python, the backend's adapt_*), looked up through the
# thread's connection proxy each time. For the types a pass actually stores, most of that is the
# identity or one backend call: each field's preparation is worked out once per statement, by
# value type; any other value (a naive datetime, a lazy text, a bool in an integer column) takes
# Django's own path. Only for the backends this was checked against (test_bulk_rows.py compares
# every field of every model with Django's own preparation).

_Convert = Callable[[Any], Any] | None  # None: the value is handed over as it is
DJANGO: Any = object()  # the value goes through field.get_db_prep_save


class Preparation(dict[type, Any]):
    """Value type → its conversion (``_Convert``), or ``DJANGO``. A text field hands any text
    over as it is, choices' members (str subclasses) too: those are found on first use."""

    def __init__(self, known: dict[type, _Convert] | None = None, *, texts: bool = False) -> None:
        super().__init__(known or {})
        self.texts = texts

    def __missing__(self, kind: type) -> Any:
        found = None if self.texts and issubclass(kind, str) else DJANGO
        self[kind] = found
        return found

_TEXT = (models.CharField, models.TextField, models.EmailField, models.URLField, models.SlugField)
_INTEGER = (
    models.IntegerField,
    models.BigIntegerField,
    models.SmallIntegerField,
    models.PositiveIntegerField,
    models.PositiveSmallIntegerField,
    models.PositiveBigIntegerField,
)
_AUTO = (models.AutoField, models.BigAutoField, models.SmallAutoField)
_JSON_TYPES = (dict, list, str, int, float, bool)
_CHECKED_VENDORS = {"sqlite", "postgresql"}


def fast_preparation(field: models.Field, conn: BaseDatabaseWrapper) -> Preparation:
    """How ``field.get_db_prep_save`` turns values of each type listed (exactly that type, not a
    subclass, but for texts) into what the driver gets; other types go through Django."""
    if conn.vendor not in _CHECKED_VENDORS:
        return Preparation()
    # CharField.to_python leaves any str as it is (choices' members too).
    return Preparation(_known(field, conn), texts=type(field) in _TEXT)


def _known(field: models.Field, conn: BaseDatabaseWrapper) -> dict[type, _Convert]:
    ops, kind = conn.ops, type(field)
    if kind in _TEXT:
        return {type(None): None, str: None}
    if kind is models.BooleanField:
        return {type(None): None, bool: None}
    if kind in _INTEGER:
        if type(ops).adapt_integerfield_value is BaseDatabaseOperations.adapt_integerfield_value:
            return {type(None): None, int: None}
        adapt, internal = ops.adapt_integerfield_value, field.get_internal_type()
        return {type(None): None, int: lambda v: adapt(v, internal)}
    if kind in _AUTO:
        if type(ops).validate_autopk_value is BaseDatabaseOperations.validate_autopk_value:
            return {type(None): None, int: None}
        return {}
    if kind is models.DateTimeField:
        adapt_moment, slow = ops.adapt_datetimefield_value, field.get_db_prep_save
        if conn.vendor == "sqlite" and settings.USE_TZ and _sqlite_moments(ops):
            # SQLite's adapter: the moment as naive text in the connection's zone.
            zone = conn.timezone

            def moment(v: datetime.datetime) -> Any:
                return str(v.astimezone(zone).replace(tzinfo=None)) if v.utcoffset() is not None else slow(v, conn)

            return {type(None): None, datetime.datetime: moment}

        def moment(v: datetime.datetime) -> Any:
            # An aware moment is what get_prep_value leaves as it is; a naive one warns there.
            return adapt_moment(v) if v.utcoffset() is not None else slow(v, conn)

        return {type(None): None, datetime.datetime: moment}
    if kind is models.DateField:
        return {type(None): None, datetime.date: ops.adapt_datefield_value}
    if kind is models.JSONField:
        adapt_json, encoder = ops.adapt_json_value, field.encoder
        return {type(None): None} | dict.fromkeys(_JSON_TYPES, lambda v: adapt_json(v, encoder))
    if kind is models.UUIDField:
        return {type(None): None, uuid.UUID: None if conn.features.has_native_uuid_field else _hex}
    if kind in (models.ForeignKey, models.OneToOneField):
        # A key's value goes to its target field; "" means NULL there, so texts take Django's path.
        target = _known(field.target_field, conn)
        target.pop(str, None)
        return target
    return {}


def _sqlite_moments(ops: BaseDatabaseOperations) -> bool:
    """Whether moments go through SQLite's own adapter (imported here: the backend imports models)."""
    from django.db.backends.sqlite3.operations import DatabaseOperations

    return type(ops).adapt_datetimefield_value is DatabaseOperations.adapt_datetimefield_value


def _hex(value: uuid.UUID) -> str:
    return value.hex


def _plain_read(field: models.Field) -> bool:
    """Whether ``field.pre_save`` only reads the attribute (no ``auto_now`` stamp)."""
    if type(field).pre_save is models.Field.pre_save:
        return True
    return type(field) in (models.DateTimeField, models.DateField) and not (field.auto_now or field.auto_now_add)


def _relations(row: models.Model) -> list[tuple[str, str, str, Collection[Any]]] | None:
    """The model's relations as save()'s check of related objects reads them (cache name, own
    key, the related object's key, empty values); None when it has others (generic relations)."""
    meta = row._meta
    if meta.private_fields:
        return None
    return [
        (f.cache_name, f.attname, f.target_field.attname, f.empty_values)
        for f in meta.concrete_fields
        if f.is_relation
    ]


def _related_in_step(row: models.Model, relations: list[tuple[str, str, str, Collection[Any]]] | None) -> bool:
    """Whether save()'s check of the related objects the row holds would find nothing to do: each
    is saved and its key is the row's (the check raises, or sets or forgets, only otherwise)."""
    if relations is None:
        return False
    cache = row._state.__dict__.get("fields_cache")
    if not cache:
        return True
    own = row.__dict__
    for name, attname, target, empty in relations:
        held = cache.get(name)
        if held is None:
            continue
        key, value = held.pk, own.get(attname)
        if key is None or type(key) is tuple or value in empty or getattr(held, target) != value:
            return False
    return True


def _values_of(
    rows: Sequence[models.Model],
    fields: Sequence[models.Field],
    conn: BaseDatabaseWrapper,
    *,
    add: bool = False,
    operation: str | None = None,
) -> list[list[Any]]:
    """Each row's values of ``fields`` as ``field.get_db_prep_save(field.pre_save(row, add))``
    gives them, the row's related fields checked first as ``operation`` (save, bulk_create)
    checks them; without an operation, the values as they are (no check, no ``auto_now``)."""
    plan = [(f.attname, operation is None or _plain_read(f), f, fast_preparation(f, conn)) for f in fields]
    relations = _relations(rows[0]) if rows and operation is not None else []
    out = []
    for row in rows:
        if operation is not None and not _related_in_step(row, relations):
            row._prepare_related_fields_for_save(operation_name=operation)
        own = row.__dict__
        values = []
        for attname, plain, field, fast in plan:
            if plain:
                value = own[attname] if attname in own else getattr(row, attname)
            else:
                value = field.pre_save(row, add)
            convert = fast[type(value)]
            if convert is None:
                values.append(value)
            elif convert is DJANGO:
                values.append(field.get_db_prep_save(value, conn))
            else:
                values.append(convert(value))
        out.append(values)
    return out


def save_rows(model: type[models.Model], rows: Sequence[models.Model]) -> None:
    """What ``row.save()`` writes for each row (every field but the key and ``auto_now_add``
    ones; ``auto_now`` fields stamped now), as one UPDATE by primary key executed for every row
    (executemany) in one transaction. Django's bulk_update builds a CASE per field and row,
    which costs more CPU than saving the rows one by one."""
    if not rows:
        return
    fields = [
        f
        for f in model._meta.concrete_fields
        if not f.primary_key and not getattr(f, "auto_now_add", False)
    ]
    conn = connections[DEFAULT_DB_ALIAS]
    params = _values_of(rows, fields, conn, operation="save")
    for values, row in zip(params, rows, strict=True):
        values.append(row.pk)
    _update_by_pk(model, fields, params, savepoint=True)


def insert_rows(model: type[models.Model], rows: Sequence[models.Model]) -> None:
    """What ``bulk_create`` inserts, for rows whose keys are not needed back: one INSERT executed
    for every row (executemany), in one transaction. bulk_create writes every value into one
    statement's SQL, which costs more CPU than the rows' values themselves."""
    if not rows:
        return
    fields = [f for f in model._meta.concrete_fields if not f.primary_key and not f.generated]
    conn = connections[DEFAULT_DB_ALIAS]
    quote = conn.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders})"
    params = _values_of(rows, fields, conn, add=True, operation="bulk_create")
    with transaction.atomic(savepoint=False), conn.cursor() as cursor:
        cursor.executemany(sql, params)


def update_fields(model: type[models.Model], rows: Sequence[models.Model], names: Sequence[str]) -> None:
    """What ``bulk_update(rows, names)`` writes (the named fields' values as they are, no
    ``auto_now``), as one UPDATE by primary key executed for every row, in one transaction.
    bulk_update builds a CASE per field and row, costlier in CPU than the rows' values."""
    if not rows:
        return
    fields = [model._meta.get_field(name) for name in names]
    params = _values_of(rows, fields, connections[DEFAULT_DB_ALIAS])
    for values, row in zip(params, rows, strict=True):
        values.append(row.pk)
    _update_by_pk(model, fields, params)


def _update_by_pk(
    model: type[models.Model], fields: Sequence[models.Field], params: list[list], *, savepoint: bool = False
) -> None:
    """One UPDATE of ``fields`` by primary key, executed for every row's values (each ending with
    its key), in one transaction."""
    conn = connections[DEFAULT_DB_ALIAS]
    quote = conn.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(model._meta.pk.column)} = %s"
    with transaction.atomic(savepoint=savepoint), conn.cursor() as cursor:
        cursor.executemany(sql, params)


def insert_keyed_rows(model: type[models.Model], rows: Sequence[models.Model], key: str) -> None:
    """``insert_rows``, then each row's primary key read back by ``key``, a unique field the rows
    carry: the rows as ``bulk_create`` leaves them, at a fraction of its CPU."""
    if not rows:
        return
    insert_rows(model, rows)
    attname = model._meta.get_field(key).attname
    by_key = {getattr(row, attname): row for row in rows}
    keys = list(by_key)
    for start in range(0, len(keys), READ_BACK):
        chunk = keys[start : start + READ_BACK]
        for value, pk in model._default_manager.filter(**{f"{key}__in": chunk}).values_list(key, "pk"):
            row = by_key[value]
            row.pk = pk
            row._state.adding, row._state.db = False, DEFAULT_DB_ALIAS
