"""Rows written in bulk by the passes: many saves as one statement, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models, transaction

READ_BACK = 900  # keys read back per query (SQLite takes at most 999 parameters in old builds)


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
    params = []
    for row in rows:
        row._prepare_related_fields_for_save(operation_name="save")
        params.append([f.get_db_prep_save(f.pre_save(row, False), connection) for f in fields] + [row.pk])
    _update_by_pk(model, fields, params, savepoint=True)


def insert_rows(model: type[models.Model], rows: Sequence[models.Model]) -> None:
    """What ``bulk_create`` inserts, for rows whose keys are not needed back: one INSERT executed
    for every row (executemany), in one transaction. bulk_create writes every value into one
    statement's SQL, which costs more CPU than the rows' values themselves."""
    if not rows:
        return
    fields = [f for f in model._meta.concrete_fields if not f.primary_key and not f.generated]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders})"
    params = []
    for row in rows:
        row._prepare_related_fields_for_save(operation_name="bulk_create")
        params.append([f.get_db_prep_save(f.pre_save(row, True), connection) for f in fields])
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.executemany(sql, params)


def update_fields(model: type[models.Model], rows: Sequence[models.Model], names: Sequence[str]) -> None:
    """What ``bulk_update(rows, names)`` writes (the named fields' values as they are, no
    ``auto_now``), as one UPDATE by primary key executed for every row, in one transaction.
    bulk_update builds a CASE per field and row, costlier in CPU than the rows' values."""
    if not rows:
        return
    fields = [model._meta.get_field(name) for name in names]
    params = [[f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields] + [row.pk] for row in rows]
    _update_by_pk(model, fields, params)


def _update_by_pk(
    model: type[models.Model], fields: Sequence[models.Field], params: list[list], *, savepoint: bool = False
) -> None:
    """One UPDATE of ``fields`` by primary key, executed for every row's values (each ending with
    its key), in one transaction."""
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(model._meta.pk.column)} = %s"
    with transaction.atomic(savepoint=savepoint), connection.cursor() as cursor:
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
            row._state.adding, row._state.db = False, connection.alias
