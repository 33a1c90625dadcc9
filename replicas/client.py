"""The Tortoise client of one replica: Tortoise's asyncpg client, whose connections fall back
to the primary's when the replica cannot be reached.

Everything read through it is a read, so a read the replica cannot serve is served by the
primary instead: a connection that cannot be had (refused, timed out, the server starting or
shutting down) takes the replica out of rotation at once and hands the caller a primary
connection, before any statement of the caller ran. A statement that fails on a connection
that broke mid-way is not retried (the caller sees the error, as it would of the primary);
the next requests go to the primary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import (
    BaseDBAsyncClient,
    PoolConnectionWrapper,
    TransactionContext,
    TransactionContextPooled,
)

from services.availability import is_unavailable


class ReplicaClient(AsyncpgDBClient):
    """Named like the primary ("default"): set in place of it for the reads of one request
    (replicas/routing.py), it is what the ORM, `connections.get("default")` and
    `in_transaction()` then use."""

    primary: BaseDBAsyncClient
    on_unreachable: Callable[[BaseException], None]

    def bind(
        self, primary: BaseDBAsyncClient, on_unreachable: Callable[[BaseException], None]
    ) -> None:
        self.primary = primary
        self.on_unreachable = on_unreachable

    def probe_connection(self) -> PoolConnectionWrapper[Any]:
        """A connection of the replica itself, never the primary's (for the health check)."""
        return PoolConnectionWrapper(self, self._pool_init_lock)

    def acquire_connection(self) -> Any:
        return _Acquire(self)

    def _in_transaction(self) -> TransactionContext:
        return _Transaction(self)


class _Acquire:
    __slots__ = ("inner", "replica")

    def __init__(self, replica: ReplicaClient) -> None:
        self.replica = replica
        self.inner: Any = None

    async def __aenter__(self) -> Any:
        inner: Any = self.replica.probe_connection()
        try:
            connection = await inner.__aenter__()
        except Exception as error:
            if not is_unavailable(error):
                raise
            self.replica.on_unreachable(error)
            inner = self.replica.primary.acquire_connection()
            connection = await inner.__aenter__()
        self.inner = inner
        return connection

    async def __aexit__(self, *exc: Any) -> None:
        await self.inner.__aexit__(*exc)


class _Transaction(TransactionContext):
    """A transaction on the replica, or on the primary when no replica connection can be had
    (before any statement of the caller ran)."""

    def __init__(self, replica: ReplicaClient) -> None:
        self.replica = replica
        self.inner: TransactionContext | None = None

    async def __aenter__(self) -> Any:
        inner: TransactionContext = TransactionContextPooled(
            TransactionWrapper(self.replica), self.replica._pool_init_lock
        )
        try:
            client = await inner.__aenter__()
        except Exception as error:
            if not is_unavailable(error):
                raise
            if getattr(inner, "token", None) is not None:
                # BEGIN failed on a connection that was had: give it back, undo the context.
                with contextlib.suppress(Exception):
                    await inner.__aexit__(type(error), error, error.__traceback__)
            self.replica.on_unreachable(error)
            inner = self.replica.primary._in_transaction()
            client = await inner.__aenter__()
        self.inner = inner
        return client

    async def __aexit__(self, *exc: Any) -> None:
        assert self.inner is not None
        await self.inner.__aexit__(*exc)
