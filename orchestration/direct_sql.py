"""The statements of the engine's hot paths, written directly: every state change
(models.StateMachine.transition: one conditional UPDATE and the INSERT of its StateChange, three
of each per task) and every piece of stored output (engine.output.append_chunk).

Building them through the ORM's QuerySet costs 150–300 µs a statement, ten times the statement
itself on SQLite (bench/overhead.py's chain of tasks and 200 independent tasks). Here their SQL
is built once per shape (model, columns, conditions) from the models' metadata, quoted by the
database backend, and each value prepared by its field exactly as the ORM's update and insert
compilers do (Field.get_db_prep_save). A value the ORM would turn into SQL of its own (an
expression such as F("attempt") + 1, a model instance, a field with a placeholder of its own)
goes through the ORM instead: same result, its usual cost.

The statements run through Django's cursor wrapper: in the caller's transaction, with its
execute wrappers and query logging (assertNumQueries counts them as before).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connections, models, router

_updates: dict[tuple, str] = {}
_inserts: dict[tuple, str] = {}


@dataclass(frozen=True)
class Add:
    """An update value: the column's value plus `amount` (like F(column) + amount)."""

    amount: int


def _prepared(model: type[models.Model], values: dict[str, Any], connection) -> list[Any] | None:
    """`values` ({field name or attname: value}) prepared for the database, or None when one of
    them needs the ORM (see the module docstring)."""
    meta = model._meta
    prepared = []
    for name, value in values.items():
        field = meta.get_field(name)
        if isinstance(value, Add):
            prepared.append(int(value.amount))
            continue
        if hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save") or hasattr(field, "get_placeholder"):
            return None
        value = field.get_db_prep_save(value, connection=connection)
        if hasattr(value, "as_sql"):
            return None
        prepared.append(value)
    return prepared


def _orm_values(model: type[models.Model], values: dict[str, Any]) -> dict[str, Any]:
    return {name: models.F(model._meta.get_field(name).attname) + value.amount if isinstance(value, Add) else value
            for name, value in values.items()}


def update_where(model: type[models.Model], match: dict[str, Any], values: dict[str, Any], states: list[str] | None = None) -> int:
    """UPDATE the rows of `model` matching `match`, setting `values`; returns the number of rows
    changed (as QuerySet.update).

    match: {field name: value} for equality ("pk" for the primary key), or {"<field>__lte":
    value} for at most; `states`: only rows whose `state` is one of them (None: any). values:
    {field name: value or Add(n)}. Raises what the database raises (IntegrityError, ...)."""
    connection = connections[router.db_for_write(model)]
    prepared = _prepared(model, values, connection)
    if prepared is None:
        rows = model.objects.filter(**match)
        return (rows.filter(state__in=states) if states is not None else rows).update(**_orm_values(model, values))
    meta = model._meta
    key = (model, connection.alias, tuple(match), None if states is None else len(states),
           tuple((name, isinstance(value, Add)) for name, value in values.items()))
    sql = _updates.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        where = []
        for name in match:
            field, _, lookup = name.partition("__")
            column = quote(meta.pk.column if field == "pk" else meta.get_field(field).column)
            where.append(f"{column} <= %s" if lookup == "lte" else f"{column} = %s")
        if states is not None:
            where.append(f"{quote(meta.get_field('state').column)} IN ({', '.join(['%s'] * len(states))})")
        assignments = []
        for name, value in values.items():
            column = quote(meta.get_field(name).column)
            assignments.append(f"{column} = {column} + %s" if isinstance(value, Add) else f"{column} = %s")
        sql = _updates[key] = f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} WHERE {' AND '.join(where)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*prepared, *match.values(), *(states or ())])
        return cursor.rowcount


def insert(model: type[models.Model], rows: list[dict[str, Any]]) -> None:
    """INSERT `rows` of `model` in one statement, each {field name or attname: value} with the
    same keys (fields left out get their defaults), without reading their primary keys back.
    Raises what the database raises (IntegrityError, ...)."""
    if not rows:
        return
    meta = model._meta
    connection = connections[router.db_for_write(model)]
    missing = [f for f in meta.concrete_fields if not f.primary_key and f.name not in rows[0] and f.attname not in rows[0]]
    rows = [{**{f.attname: f.get_default() for f in missing}, **row} for row in rows]
    params = []
    for row in rows:
        prepared = _prepared(model, row, connection)
        if prepared is None:
            model.objects.bulk_create([model(**row) for row in rows])
            return
        params += prepared
    names = tuple(rows[0])
    key = (model, connection.alias, names, len(rows))
    sql = _inserts.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(meta.get_field(name).column) for name in names)
        one = f"({', '.join(['%s'] * len(names))})"
        sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join([one] * len(rows))}"
        if len(rows) <= 8:  # the shapes of many rows are not worth keeping
            _inserts[key] = sql
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def number(model: type[models.Model], pk: Any, name: str) -> int | None:
    """The integer in column `name` of the row of `model` whose primary key is `pk` (None when
    there is no such row)."""
    connection = connections[router.db_for_read(model)]
    meta = model._meta
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote(meta.get_field(name).column)} FROM {quote(meta.db_table)} WHERE {quote(meta.pk.column)} = %s", [pk])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def counts(model: type[models.Model], name: str, match: dict[str, Any]) -> dict[Any, int]:
    """{value of field `name`: number of rows} over the rows of `model` whose fields equal
    `match` ({field name: value}; text and numbers, compared as stored)."""
    connection = connections[router.db_for_read(model)]
    meta = model._meta
    quote = connection.ops.quote_name
    column = quote(meta.get_field(name).column)
    where = " AND ".join(f"{quote(meta.get_field(field).column)} = %s" for field in match) or "1 = 1"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column}, COUNT(*) FROM {quote(meta.db_table)} WHERE {where} GROUP BY {column}", list(match.values()))
        return {value: int(n) for value, n in cursor.fetchall()}


def rows(model: type[models.Model], match: dict[str, Any], names: tuple[str, ...]) -> list[models.Model]:
    """The rows of `model` matching `match` ({field name: value} for equality, {"<field>__in":
    [values]} for one of them; text and numbers), as instances with the fields `names` loaded
    (the primary key always), in primary key order. Built by the ORM's raw queries (their
    values converted as the ORM converts them)."""
    connection = connections[router.db_for_read(model)]
    meta = model._meta
    quote = connection.ops.quote_name
    where, params = _where(meta, match, quote)
    if where is None:
        return []
    selected = ", ".join(quote(meta.get_field(name).column) for name in dict.fromkeys((meta.pk.name, *names)))
    sql = f"SELECT {selected} FROM {quote(meta.db_table)} WHERE {where} ORDER BY {quote(meta.pk.column)}"
    return list(model.objects.raw(sql, params))


def exists(model: type[models.Model], match: dict[str, Any]) -> bool:
    """Whether a row of `model` matches `match` (as `rows`, and {"<field>__not_in": [values]}
    for none of them)."""
    connection = connections[router.db_for_read(model)]
    meta = model._meta
    quote = connection.ops.quote_name
    where, params = _where(meta, match, quote)
    if where is None:
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {quote(meta.db_table)} WHERE {where} LIMIT 1", params)
        return cursor.fetchone() is not None


def _where(meta, match: dict[str, Any], quote) -> tuple[str | None, list[Any]]:
    """(the WHERE condition of `match`, its parameters); None when it matches nothing (an empty
    "__in" list). Lookups: equality, "__in" and "__not_in" (text and numbers)."""
    where, params = [], []
    for lookup, value in match.items():
        name, _, op = lookup.partition("__")
        column = quote(meta.get_field(name).column)
        if op in ("in", "not_in"):
            values = list(value)
            if not values:
                if op == "in":
                    return None, []
                continue
            where.append(f"{column} {'NOT IN' if op == 'not_in' else 'IN'} ({', '.join(['%s'] * len(values))})")
            params += values
        else:
            where.append(f"{column} = %s")
            params.append(value)
    return " AND ".join(where) or "1 = 1", params
