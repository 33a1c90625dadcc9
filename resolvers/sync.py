"""Resolvers of sync: push a mutation queue, pull changed scopes (sync-protocol.md)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from services.availability import is_unavailable, unavailable
from services.errors import DomainError, ErrorCode
from subscriptions.connections import RESTARTING, LiveConnection
from sync import poke as pokes
from sync import protocol
from sync import pull as pulls
from sync import push as pushes

if TYPE_CHECKING:
    from strawberry.types import Info

    from resolvers.context import RequestContext


def _context(info: Info) -> RequestContext:
    return info.context


async def sync_push(info: Info, body: dict[str, Any]) -> dict[str, Any]:
    context = _context(info)
    try:
        viewer = context.require_viewer()
        env = pushes.env_from_app(context.request.app.state, context.settings)
        return await pushes.push(viewer, body, env)
    except Exception as error:
        # The database is out of reach (the session check included): the protocol's answer
        # is RETRY_LATER for every mutation, as for any transient failure.
        if not is_unavailable(error):
            raise
        return protocol.retry_later(body)


async def sync_pull(info: Info, body: dict[str, Any]) -> dict[str, Any]:
    context = _context(info)
    viewer = context.require_viewer()
    return (await pulls.pull(viewer, body, context.settings)).parsed()


async def sync_poke(info: Info) -> AsyncIterator[list[dict[str, object]] | None]:
    """The viewer's pokes (None: a resync, pull anyway), for as long as the connection lasts."""
    context = _context(info)
    viewer = context.require_viewer()
    live, connection = context.live, context.live_connection
    if live is None or connection is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Subscriptions run over WebSocket (graphql-transport-ws, graphql-ws) or "
            "graphql-sse (POST /graphql/stream with Accept: text/event-stream).",
        )
    if live.draining or connection.is_closed:
        raise DomainError(ErrorCode.TEMPORARILY_UNAVAILABLE, RESTARTING.message)
    if not live.broker.available:  # Redis out of reach: no poke could arrive
        raise unavailable("Sync pokes are temporarily unavailable; pull, and subscribe again.")
    connection.acquire_subscription()
    return _Counted(pokes.pokes(live.broker, viewer.id), connection)


class _Counted:
    """A stream that holds one subscription slot of its connection until it ends."""

    def __init__(
        self, stream: AsyncGenerator[list[dict[str, object]] | None], connection: LiveConnection
    ) -> None:
        self._stream = stream
        self._connection: LiveConnection | None = connection

    def __aiter__(self) -> _Counted:
        return self

    async def __anext__(self) -> list[dict[str, object]] | None:
        try:
            return await self._stream.__anext__()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.release_subscription()
            self._connection = None
            await self._stream.aclose()
