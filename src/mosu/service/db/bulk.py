"""Multi-row inserts and key lookups whose statement text does not depend on the row count.

An ``INSERT ... VALUES (...), (...)`` of n rows is a new statement for every n: the
driver rewrites its placeholders (psycopg does it in Python, for every parameter, and
caches only short statements) and PostgreSQL parses and plans it again, on every group
commit of submissions. On PostgreSQL the rows go instead as one JSON document, turned
back into typed rows server-side (``json_to_recordset``): one statement text per table,
which psycopg converts once and prepares after a few uses, whatever the batch size, and
one parameter, serialized by the C encoder of ``json`` (arrays of every column cost
psycopg more than the statement saves: it adapts each element in Python). Values
round-trip: strings, ints, booleans, NULL, and floats, which ``json`` writes in their
shortest exact form. SQLite (one process, no network, no plan to reuse) keeps the plain
multi-row insert.

Only plain column types are supported, with values as the column stores them (a JSON
column's value nested as is, as SQLAlchemy's default serializer writes it); an insert of
columns the table does not describe, a NaN or infinity, or a JSON column's None (which
SQLAlchemy stores as JSON ``null``, not SQL NULL) takes the generic path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Column, Connection, Insert, Table, select, tuple_
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement


def json_rows_apply(conn: Connection) -> bool:
    """Whether ``conn`` takes the fixed-shape statements (PostgreSQL): rows as one JSON
    document, key pairs as unnested arrays."""
    return conn.dialect.name == "postgresql"


def insert_rows(
    conn: Connection,
    stmt: Insert,
    rows: Sequence[Mapping[str, Any]],
    returning: ColumnElement[Any] | None = None,
) -> list[Any]:
    """Insert ``rows`` (all with the same keys) with ``stmt``, an ``insert(table)``; with
    ``returning`` (the table's autoincrement key), its values in the order of ``rows``."""
    if not rows:
        return []
    given = tuple(rows[0])
    plan = _plan(stmt, given)
    if not json_rows_apply(conn) or plan is None:
        return _generic(conn, stmt, rows, returning)
    assert isinstance(stmt.table, Table)
    defaults, json_names = plan
    if any(row[n] is None for n in json_names for row in rows):
        return _generic(conn, stmt, rows, returning)
    try:
        # NaN and infinities are no JSON: such rows take the generic path.
        document = json.dumps(rows if isinstance(rows, list) else list(rows), allow_nan=False)
    except (TypeError, ValueError):
        return _generic(conn, stmt, rows, returning)
    key = returning.key if returning is not None else None
    sql = _recordset_insert(conn.dialect, stmt.table, given, tuple(defaults), key)
    params = (*defaults.values(), document)
    if key is None:
        conn.exec_driver_sql(sql, params)
        return []
    # The rows are inserted in ``ord`` order and draw the sequence in that order, so the
    # ascending keys are the rows' keys in the order given.
    return sorted(r[0] for r in conn.exec_driver_sql(sql, params))


def _generic(
    conn: Connection,
    stmt: Insert,
    rows: Sequence[Mapping[str, Any]],
    returning: ColumnElement[Any] | None,
) -> list[Any]:
    if returning is None:
        conn.execute(stmt, list(rows))
        return []
    generic = stmt.returning(returning, sort_by_parameter_order=True)
    return list(conn.execute(generic, list(rows)).scalars())


def select_by_pairs(
    conn: Connection,
    table: Table,
    pair: tuple[str, str],
    pairs: Sequence[tuple[Any, Any]],
    wanted: Sequence[str],
) -> list[Any]:
    """The rows of ``table`` (``wanted`` columns) whose two ``pair`` columns are one of
    ``pairs``."""
    if not pairs:
        return []
    first, second = table.c[pair[0]], table.c[pair[1]]
    if not json_rows_apply(conn):
        query = select(*(table.c[w] for w in wanted)).where(tuple_(first, second).in_(pairs))
        return list(conn.execute(query))
    sql = _unnest_select(conn.dialect, table, pair, tuple(wanted))
    params = ([p[0] for p in pairs], [p[1] for p in pairs])
    return list(conn.exec_driver_sql(sql, params))


@lru_cache(maxsize=64)
def _plan(stmt: Insert, names: tuple[str, ...]) -> tuple[dict[str, Any], tuple[str, ...]] | None:
    """The client-side defaults of the columns ``names`` leave out (SQLAlchemy's insert
    fills those in; this one must too) and which of ``names`` are JSON columns; None
    when the table does not describe every column named or a default is not a constant."""
    table = stmt.table
    if not isinstance(table, Table) or any(name not in table.c for name in names):
        return None
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.key in names or column.default is None:
            continue
        if not column.default.is_scalar or isinstance(column.type, JSON):
            return None
        defaults[column.key] = getattr(column.default, "arg", None)
    return defaults, tuple(n for n in names if isinstance(table.c[n].type, JSON))


@lru_cache(maxsize=64)
def _recordset_insert(
    dialect: Dialect,
    table: Table,
    names: tuple[str, ...],
    defaults: tuple[str, ...],
    key: str | None,
) -> str:
    quote = dialect.identifier_preparer.quote
    cols = ", ".join(quote(n) for n in names + defaults)
    typed = ", ".join(f"{quote(n)} {_type(dialect, table.c[n])}" for n in names)
    constants = "".join(f", CAST(%b AS {_type(dialect, table.c[n])})" for n in defaults)
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({cols}) "
        f"SELECT {', '.join('r.' + quote(n) for n in names)}{constants} "
        f"FROM ROWS FROM (json_to_recordset(CAST(%b AS JSON)) AS ({typed})) "
        f"WITH ORDINALITY AS r({', '.join(quote(n) for n in names)}, ord) ORDER BY r.ord"
    )
    if key is not None:
        sql += f" RETURNING {quote(key)}"
    return sql


@lru_cache(maxsize=64)
def _unnest_select(
    dialect: Dialect, table: Table, pair: tuple[str, str], wanted: tuple[str, ...]
) -> str:
    quote = dialect.identifier_preparer.quote
    a, b = (quote(n) for n in pair)
    arrays = ", ".join(f"CAST(%b AS {_array_type(dialect, table.c[n])})" for n in pair)
    return (
        f"SELECT {', '.join('t.' + quote(w) for w in wanted)} "
        f"FROM {dialect.identifier_preparer.format_table(table)} AS t "
        f"WHERE (t.{a}, t.{b}) IN (SELECT * FROM unnest({arrays}))"
    )


def _type(dialect: Dialect, column: Column[Any]) -> str:
    return column.type.compile(dialect=dialect)


def _array_type(dialect: Dialect, column: Column[Any]) -> str:
    return f"{_type(dialect, column)}[]"
