"""Resolvers of sync: push a mutation queue, pull changed scopes (sync-protocol.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sync import pull as pulls
from sync import push as pushes

if TYPE_CHECKING:
    from strawberry.types import Info

    from resolvers.context import RequestContext


def _context(info: Info) -> RequestContext:
    return info.context


async def sync_push(info: Info, body: dict[str, Any]) -> dict[str, Any]:
    context = _context(info)
    viewer = context.require_viewer()
    env = pushes.env_from_app(context.request.app.state, context.settings)
    return await pushes.push(viewer, body, env)


async def sync_pull(info: Info, body: dict[str, Any]) -> dict[str, Any]:
    context = _context(info)
    viewer = context.require_viewer()
    return await pulls.pull(viewer, body, context.settings)
