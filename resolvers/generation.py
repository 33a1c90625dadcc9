"""Resolvers of course generation: ask for a course, follow, cancel or retry its job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from generation import jobs
from models import GenerationJob
from services.errors import DomainError, ErrorCode
from services.records import CourseRecord
from services.validation import parse_id

if TYPE_CHECKING:
    from strawberry.types import Info

    from resolvers.context import RequestContext


def _context(info: Info) -> RequestContext:
    return info.context


async def generate_course(
    info: Info, data: dict[str, Any], idempotency_key: str | None
) -> tuple[GenerationJob, CourseRecord | None]:
    context = _context(info)
    viewer = context.require_viewer()
    rate = getattr(context.settings, f"generation_rate_{viewer.tier.value}")
    assert context.writer is not None, "the view sets the writer"
    return await jobs.request_generation(
        viewer,
        data,
        idempotency_key,
        context.jobs,
        context.events,
        context.rate_limits,
        rate,
        context.writer,
    )


async def cancel_generation(info: Info, job_id: str) -> GenerationJob:
    context = _context(info)
    viewer = context.require_viewer()
    return await jobs.cancel_generation(
        viewer, parse_id(job_id, "jobId"), context.jobs, context.events
    )


async def retry_generation(info: Info, job_id: str) -> GenerationJob:
    context = _context(info)
    viewer = context.require_viewer()
    return await jobs.retry_generation(
        viewer, parse_id(job_id, "jobId"), context.jobs, context.events
    )


async def generation_job(info: Info, job_id: str) -> GenerationJob | None:
    """The job, or null when it does not exist or its course is not the viewer's to see."""
    viewer = _context(info).require_viewer()
    try:
        return await jobs.visible_job(viewer.id, parse_id(job_id, "id"))
    except DomainError as error:
        if error.code is ErrorCode.NOT_FOUND:
            return None
        raise
