"""The two statements of every state change (models.StateMachine.transition), written directly.

A state change is one conditional UPDATE of one row and one INSERT of its StateChange; the engine
makes three of each per task. Building them through the ORM's QuerySet costs 150–300 µs a
statement, ten times the statement itself on SQLite (bench/overhead.py's chain of tasks). Here
their SQL is built once per shape (model, columns) from the models' metadata, quoted by the
database backend, and each value prepared by its field exactly as the ORM's update and insert
compilers do (Field.get_db_prep_save). A value the ORM would turn into SQL of its own (an
expression such as F("attempt") + 1, a model instance, a field with a placeholder of its own)
goes through the ORM instead: same result, its usual cost.

The statements run through Django's cursor wrapper: in the caller's transaction, with its
execute wrappers and query logging (assertNumQueries counts them as before).
"""
from __future__ import annotations

from typing import Any

from django.db import connections, models, router

_updates: dict[tuple, str] = {}
_inserts: dict[tuple, str] = {}


def _direct(model: type[models.Model], values: dict[str, Any], connection) -> list[Any] | None:
    """`values` ({field name or attname: value}) prepared for the database, or None when one of
    them needs the ORM (see the module docstring)."""
    meta = model._meta
    prepared = []
    for name, value in values.items():
        field = meta.get_field(name)
        if hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save") or hasattr(field, "get_placeholder"):
            return None
        value = field.get_db_prep_save(value, connection=connection)
        if hasattr(value, "as_sql"):
            return None
        prepared.append(value)
    return prepared


def update_where(model: type[models.Model], match: dict[str, Any], states: list[str], values: dict[str, Any]) -> int:
    """UPDATE the rows of `model` whose fields equal `match` ({field name: value}; "pk" for the
    primary key) and whose `state` is one of `states`, setting `values`; returns the number of
    rows changed (as QuerySet.update). Raises what the database raises (IntegrityError, ...)."""
    connection = connections[router.db_for_write(model)]
    prepared = _direct(model, values, connection)
    if prepared is None:
        return model.objects.filter(**match, state__in=states).update(**values)
    meta = model._meta
    key = (model, connection.alias, tuple(match), len(states), tuple(values))
    sql = _updates.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        columns = [meta.pk.column if name == "pk" else meta.get_field(name).column for name in match]
        where = [f"{quote(column)} = %s" for column in columns]
        where.append(f"{quote(meta.get_field('state').column)} IN ({', '.join(['%s'] * len(states))})")
        assignments = ", ".join(f"{quote(meta.get_field(name).column)} = %s" for name in values)
        sql = _updates[key] = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {' AND '.join(where)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*prepared, *match.values(), *states])
        return cursor.rowcount


def insert(model: type[models.Model], values: dict[str, Any]) -> None:
    """INSERT one row of `model` with `values` ({field name or attname: value}; fields left out
    get their defaults), without reading its primary key back. Raises what the database raises."""
    meta = model._meta
    values = {**{f.attname: f.get_default() for f in meta.concrete_fields
                 if not f.primary_key and f.name not in values and f.attname not in values}, **values}
    connection = connections[router.db_for_write(model)]
    prepared = _direct(model, values, connection)
    if prepared is None:
        model.objects.create(**values)
        return
    key = (model, connection.alias, tuple(values))
    sql = _inserts.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(meta.get_field(name).column) for name in values)
        sql = _inserts[key] = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(values))})"
    with connection.cursor() as cursor:
        cursor.execute(sql, prepared)
