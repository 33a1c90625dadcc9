"""Root query resolvers: the viewer, one course, and a page of courses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services import course_reads
from services.accounts import Viewer
from services.course_reads import CourseFilter, CourseOrder, CoursePage
from services.records import CourseRecord
from services.validation import parse_id

if TYPE_CHECKING:
    from strawberry.types import Info

    from resolvers.context import RequestContext


def _context(info: Info) -> RequestContext:
    return info.context


def me(info: Info) -> Viewer | None:
    context = _context(info)
    if context.viewer is None and context.auth_error is not None:
        raise context.auth_error  # a refused token is reported, not taken for "logged out"
    return context.viewer


async def course(info: Info, course_id: str) -> CourseRecord | None:
    """The course, or null when it does not exist or the viewer may not see it."""
    context = _context(info)
    context.require_viewer()
    return await context.loaders.course_by_id.load(parse_id(course_id, "id"))


async def courses(
    info: Info, *, first: int, after: str | None, flt: CourseFilter, order: CourseOrder
) -> CoursePage:
    viewer = _context(info).require_viewer()
    return await course_reads.list_courses(
        viewer.id, first=first, after=after, flt=flt, order=order
    )


async def count_courses(page: CoursePage, flt: CourseFilter) -> int:
    return await course_reads.count_courses(page.scope, flt)
