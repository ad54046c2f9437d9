"""The statements of the engine's hot paths, written directly: every state change
(models.StateMachine.transition: one conditional UPDATE and the INSERT of its StateChange, three
of each per task) and every piece of stored output (engine.output.append_chunk).

Building them through the ORM's QuerySet costs 150–300 µs a statement, ten times the statement
itself on SQLite (bench/overhead.py's chain of tasks and 200 independent tasks). Here their SQL
is built from the models' metadata, quoted by the database backend, with one WHERE builder
(`where`) for every statement, and each value prepared by its field as the ORM's compilers do
(Field.get_db_prep_save for what is written, get_db_prep_value for what is compared). A value the ORM would turn into SQL of its own (an
expression such as F("attempt") + 1, a model instance, a field with a placeholder of its own)
goes through the ORM instead: same result, its usual cost.

The statements run through Django's cursor wrapper: in the caller's transaction, with its
execute wrappers and query logging (assertNumQueries counts them as before).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connections, models, router


@dataclass(frozen=True)
class Add:
    """An update value: the column's value plus `amount` (like F(column) + amount)."""

    amount: int


def where(model: type[models.Model], match: dict[str, Any], connection, qualified: bool = False) -> tuple[str | None, list[Any]]:
    """(the SQL condition of `match` on `model`'s table, its parameters), or (None, []) when it
    matches nothing (an empty "__in" list). `match`: {"<field>": value} for equality ("pk" for
    the primary key), or {"<field>__<lookup>": value} with lookup "lte", "gt", "in" or "not_in"
    (a list); values are prepared by their fields (a datetime as the backend stores it).
    `qualified`: columns named with their table (for a join)."""
    meta = model._meta
    quote = connection.ops.quote_name
    operators = {"": "=", "lte": "<=", "gt": ">"}
    conditions, params = [], []
    for lookup, value in match.items():
        name, _, op = lookup.partition("__")
        field = meta.pk if name == "pk" else meta.get_field(name)
        column = f"{quote(meta.db_table)}.{quote(field.column)}" if qualified else quote(field.column)
        if op in ("in", "not_in"):
            values = [field.get_db_prep_value(v, connection) for v in value]
            if not values:
                if op == "in":
                    return None, []
                continue
            conditions.append(f"{column} {'NOT IN' if op == 'not_in' else 'IN'} ({', '.join(['%s'] * len(values))})")
            params += values
        else:
            conditions.append(f"{column} {operators[op]} %s")
            params.append(field.get_db_prep_value(value, connection))
    return " AND ".join(conditions) or "1 = 1", params


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


def update_where(model: type[models.Model], match: dict[str, Any], values: dict[str, Any], states: list[str] | None = None) -> int:
    """UPDATE the rows of `model` matching `match` (as `where`) and, unless `states` is None,
    whose `state` is one of `states`, setting `values` ({field name: value or Add(n)}); returns
    the number of rows changed (as QuerySet.update). Raises what the database raises
    (IntegrityError, ...)."""
    connection = connections[router.db_for_write(model)]
    prepared = _prepared(model, values, connection)
    if prepared is None:
        rows = model.objects.filter(**match)
        orm_values = {name: models.F(model._meta.get_field(name).attname) + value.amount if isinstance(value, Add) else value
                      for name, value in values.items()}
        return (rows.filter(state__in=states) if states is not None else rows).update(**orm_values)
    condition, params = where(model, match if states is None else {**match, "state__in": states}, connection)
    if condition is None:
        return 0
    quote = connection.ops.quote_name
    assignments = []
    for name, value in values.items():
        column = quote(model._meta.get_field(name).column)
        assignments.append(f"{column} = {column} + %s" if isinstance(value, Add) else f"{column} = %s")
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {quote(model._meta.db_table)} SET {', '.join(assignments)} WHERE {condition}", [*prepared, *params])
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
    quote = connection.ops.quote_name
    columns = ", ".join(quote(meta.get_field(name).column) for name in rows[0])
    one = f"({', '.join(['%s'] * len(rows[0]))})"
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join([one] * len(rows))}", params)


def _select(model: type[models.Model], columns: str, match: dict[str, Any], tail: str = "") -> list[tuple]:
    """The rows of `SELECT columns FROM model's table WHERE match (as `where`) tail`, as tuples."""
    connection = connections[router.db_for_read(model)]
    condition, params = where(model, match, connection)
    if condition is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {connection.ops.quote_name(model._meta.db_table)} WHERE {condition} {tail}", params)
        return cursor.fetchall()


def _column(model: type[models.Model], name: str) -> str:
    return connections[router.db_for_read(model)].ops.quote_name(model._meta.get_field(name).column)


def number(model: type[models.Model], pk: Any, name: str) -> int | None:
    """The integer in column `name` of the row of `model` whose primary key is `pk` (None when
    there is no such row)."""
    found = _select(model, _column(model, name), {"pk": pk})
    return int(found[0][0]) if found else None


def counts(model: type[models.Model], name: str, match: dict[str, Any]) -> dict[Any, int]:
    """{value of field `name`: number of rows} over the rows of `model` matching `match` (as `where`)."""
    column = _column(model, name)
    return {value: int(n) for value, n in _select(model, f"{column}, COUNT(*)", match, f"GROUP BY {column}")}


def exists(model: type[models.Model], match: dict[str, Any]) -> bool:
    """Whether a row of `model` matches `match` (as `where`)."""
    return bool(_select(model, "1", match, "LIMIT 1"))


def rows(model: type[models.Model], match: dict[str, Any], names: tuple[str, ...]) -> list[models.Model]:
    """The rows of `model` matching `match` (as `where`), as instances with the fields `names`
    loaded (the primary key always), in primary key order. Built by the ORM's raw queries (their
    values converted as the ORM converts them)."""
    connection = connections[router.db_for_read(model)]
    meta = model._meta
    quote = connection.ops.quote_name
    condition, params = where(model, match, connection)
    if condition is None:
        return []
    selected = ", ".join(quote(meta.get_field(name).column) for name in dict.fromkeys((meta.pk.name, *names)))
    sql = f"SELECT {selected} FROM {quote(meta.db_table)} WHERE {condition} ORDER BY {quote(meta.pk.column)}"
    return list(model.objects.raw(sql, params))
