"""Resolvers of live progress: follow a job's events, mint a stream token for EventSource."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from services.errors import DomainError, ErrorCode
from services.validation import parse_id
from subscriptions.auth import followable_job, issue_stream_token
from subscriptions.hub import Follower

if TYPE_CHECKING:
    from strawberry.types import Info

    from resolvers.context import RequestContext


def _context(info: Info) -> RequestContext:
    return info.context


async def generation_progress(info: Info, job_id: str, after: int | None) -> Follower:
    context = _context(info)
    viewer = context.require_viewer()
    if context.live is None or context.live_connection is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "Subscriptions run over WebSocket (graphql-transport-ws, graphql-ws) or "
            "graphql-sse (POST /graphql/stream with Accept: text/event-stream).",
        )
    return await context.live.follow(
        viewer, parse_id(job_id, "jobId"), after, context.live_connection
    )


async def stream_token(info: Info, job_id: str) -> tuple[uuid.UUID, str, int]:
    """The job, a token that opens its SSE stream for the viewer, and the token's lifetime."""
    context = _context(info)
    viewer = context.require_viewer()
    job = await followable_job(viewer.id, parse_id(job_id, "jobId"))
    token, ttl = issue_stream_token(context.settings, viewer, job.id)
    return job.id, token, ttl
