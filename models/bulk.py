"""Multi-row statements on both engines, for writers that apply many rows at once (sync push).

PostgreSQL gets ONE statement whatever the row count: the rows travel as one array per column
and `unnest` turns them back into rows, so 1,000 rows cost one round trip and one plan. SQLite
(in-process, no round trip to save) runs the same one-row statement through `executemany`.
Values go in as Python objects; UUIDs are turned into text for SQLite, which stores them so.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

Column = tuple[str, str]  # (name, PostgreSQL type of its array elements: uuid, text, int, ...)
_PARAM = re.compile(r"\$(\d+)")


def _renumber(query: str, offset: int) -> str:
    return _PARAM.sub(lambda m: f"${int(m[1]) + offset}", query)


class Writes:
    """Writes of one transaction held back and sent together. On PostgreSQL they go out as ONE
    statement, each a data-modifying `WITH` part (`WITH w1 AS (INSERT …), w2 AS (UPDATE …)
    SELECT 1`): one round trip for a push's every table. The parts share one snapshot and do
    not see each other's rows, so no two may touch the same row (the callers write disjoint
    rows). SQLite, with no round trip to save, runs each at once."""

    def __init__(self, db: BaseDBAsyncClient) -> None:
        self.db = db
        self.parts: list[tuple[str, list[Any]]] = []

    async def add(self, query: str, args: list[Any]) -> None:
        if is_sqlite(self.db):
            await self.db.execute_query(query, args)
        else:
            self.parts.append((query, args))

    async def flush(self) -> None:
        parts, self.parts = self.parts, []
        if not parts:
            return
        if len(parts) == 1:
            await self.db.execute_query(*parts[0])
            return
        ctes: list[str] = []
        args: list[Any] = []
        for n, (query, values) in enumerate(parts, 1):
            ctes.append(f"w{n} AS ({_renumber(query, len(args))})")
            args += values
        await self.db.execute_query(f"WITH {', '.join(ctes)} SELECT 1", args)


def is_sqlite(db: BaseDBAsyncClient) -> bool:
    return db.capabilities.dialect == "sqlite"


def _lite(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


def params(db: BaseDBAsyncClient, values: Sequence[Any]) -> list[Any]:
    """Statement arguments as the engine's driver takes them."""
    return [_lite(v) for v in values] if is_sqlite(db) else list(values)


def placeholder(db: BaseDBAsyncClient, number: int) -> str:
    return "?" if is_sqlite(db) else f"${number}"


def any_of(
    db: BaseDBAsyncClient, column: str, kind: str, values: Iterable[Any], number: int
) -> tuple[str, list[Any]]:
    """`column` is one of `values`: a condition and its arguments, numbered from `number`."""
    items = list(values)
    if not is_sqlite(db):
        return f"{column} = ANY(${number}::{kind}[])", [items]
    if not items:
        return "1 = 0", []
    return f"{column} IN ({', '.join('?' * len(items))})", [_lite(v) for v in items]


async def insert(
    db: BaseDBAsyncClient,
    table: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    on_conflict: str = "",
    into: Writes | None = None,
) -> None:
    """Insert `rows` (one value per column, in order); `on_conflict` is appended as written
    (`ON CONFLICT (a, b) DO UPDATE SET c = excluded.c`, or `DO NOTHING`). With `into`, the
    statement joins those writes instead of going out at once."""
    if not rows:
        return
    names = ", ".join(name for name, _ in columns)
    if is_sqlite(db):
        marks = ", ".join("?" * len(columns))
        query = f"INSERT INTO {table} ({names}) VALUES ({marks}) {on_conflict}"  # noqa: S608
        await db.execute_many(query, [[_lite(v) for v in row] for row in rows])
        return
    arrays = ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(columns, 1))
    query = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {on_conflict}"  # noqa: S608
    args = [list(column) for column in zip(*rows, strict=True)]
    if into is not None:
        await into.add(query, args)
    else:
        await db.execute_query(query, args)


async def update(
    db: BaseDBAsyncClient,
    table: str,
    key: Column,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    into: Writes | None = None,
) -> None:
    """Set `columns` of the rows whose `key` is the first value of each row."""
    if not rows:
        return
    if is_sqlite(db):
        sets = ", ".join(f"{name} = ?" for name, _ in columns)
        query = f"UPDATE {table} SET {sets} WHERE {key[0]} = ?"  # noqa: S608
        await db.execute_many(query, [[_lite(v) for v in (*row[1:], row[0])] for row in rows])
        return
    every = [key, *columns]
    arrays = ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(every, 1))
    aliases = ", ".join(name for name, _ in every)
    sets = ", ".join(f"{name} = u.{name}" for name, _ in columns)
    query = (
        f"UPDATE {table} AS t SET {sets} FROM unnest({arrays}) AS u({aliases}) "  # noqa: S608
        f"WHERE t.{key[0]} = u.{key[0]}"
    )
    args = [list(column) for column in zip(*rows, strict=True)]
    if into is not None:
        await into.add(query, args)
    else:
        await db.execute_query(query, args)
