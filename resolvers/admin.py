"""Resolvers of the operator's surface: every one checks the viewer is an operator first."""

from __future__ import annotations

import uuid
from datetime import date
from typing import TYPE_CHECKING

from generation import dead_letters, queue_status
from models import GenerationJob
from services import model_usage, operations
from services.accounts import Viewer
from services.validation import parse_id

if TYPE_CHECKING:
    from strawberry.types import Info

    from resolvers.context import RequestContext


def _context(info: Info) -> RequestContext:
    return info.context


def require_admin(info: Info) -> Viewer:
    context = _context(info)
    if context.viewer is None and context.auth_error is not None:
        raise context.auth_error  # an expired token says so, not "log in"
    return operations.require_admin(context.viewer)


async def usage(
    info: Info, start: date, end: date, user_id: str | None, first: int
) -> model_usage.UsageReport:
    require_admin(info)
    user = parse_id(user_id, "userId") if user_id is not None else None
    return await model_usage.usage_report(start, end, user, first)


async def queue(info: Info) -> queue_status.QueueStatus:
    require_admin(info)
    return await queue_status.queue_status(_context(info).jobs)


async def dead_lettered(info: Info, first: int) -> list[GenerationJob]:
    require_admin(info)
    return await dead_letters.dead_letters(first)


async def model_endpoints(info: Info) -> list[operations.EndpointHealth]:
    require_admin(info)
    return await operations.model_health(_context(info).writer)


async def replay_dead_letter(info: Info, job_id: str) -> dead_letters.Replay:
    require_admin(info)
    context = _context(info)
    parsed: uuid.UUID = parse_id(job_id, "jobId")
    return await dead_letters.replay(parsed, context.jobs, context.events)
