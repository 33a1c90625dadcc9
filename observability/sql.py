"""SQL statements per request, counted cheaply in production.

`install()` wraps the statement methods (`execute_query`, `execute_insert`, …) of Tortoise's
SQLite and asyncpg clients, transactions included, once per process. While a block runs
under `counting()` every statement sent from its task, and from the tasks it starts (they
inherit the context: dataloader batches, gathered resolvers), adds one to its counter. Outside
such a block the wrapper costs one context-variable read. These are the statements
Tortoise logs, the ones tests/support.py `count_statements` counts.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_METHODS = (
    "execute_query",
    "execute_query_dict",
    "execute_insert",
    "execute_many",
    "execute_script",
)
_WRAPPED = "__coursegen_counted__"


class StatementCount:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


_current: ContextVar[StatementCount | None] = ContextVar("sql_statements", default=None)


def _counted(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        count = _current.get()
        if count is not None:
            count.value += 1
        return await method(self, *args, **kwargs)

    setattr(counted, _WRAPPED, True)
    return counted


def _client_classes() -> list[type]:
    from tortoise.backends.sqlite.client import SqliteClient, SqliteTransactionWrapper

    classes: list[type] = [SqliteClient, SqliteTransactionWrapper]
    try:
        from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
    except ImportError:  # asyncpg not installed
        return classes
    return [*classes, AsyncpgDBClient, TransactionWrapper]


def install() -> None:
    """Wrap the clients' statement methods (idempotent)."""
    for cls in _client_classes():
        for name in _METHODS:
            method = cls.__dict__.get(name)  # only what the class itself defines
            if method is not None and not getattr(method, _WRAPPED, False):
                setattr(cls, name, _counted(method))


@contextmanager
def counting() -> Iterator[StatementCount]:
    """Count the statements sent while the block runs (in this task and its children)."""
    count = StatementCount()
    token = _current.set(count)
    try:
        yield count
    finally:
        _current.reset(token)


def count_statement() -> None:
    """One statement sent outside Tortoise (the plain-SQL readers of services/tree_reads.py)."""
    count = _current.get()
    if count is not None:
        count.value += 1
