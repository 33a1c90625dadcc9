"""The root Query type."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from models import CourseLevel, CourseStatus
from resolvers import queries
from schema.admin import AdminQuery
from schema.generation import GenerationQuery
from schema.sync import SyncQuery
from schema.types import Course, CourseEdge, Me, PageInfo
from services.course_reads import CourseFilter, CourseOrder, CoursePage


@strawberry.input
class CourseFilterInput:
    status: CourseStatus | None = None
    level: CourseLevel | None = None
    search: str | None = strawberry.field(
        default=None, description="Words in the title or description (at most 100 characters)."
    )


@strawberry.type
class CourseConnection:
    page: strawberry.Private[CoursePage]
    flt: strawberry.Private[CourseFilter]

    @strawberry.field(description="All courses matching the filter, across every page.")
    async def total_count(self) -> int:
        return await queries.count_courses(self.page, self.flt)

    @strawberry.field
    def page_info(self) -> PageInfo:
        return PageInfo(has_next_page=self.page.has_next_page, end_cursor=self.page.end_cursor)

    @strawberry.field
    def edges(self) -> list[CourseEdge]:
        return [
            CourseEdge(cursor=cursor, node=Course(record=record))
            for cursor, record in zip(self.page.cursors, self.page.items, strict=True)
        ]

    @strawberry.field(description="The nodes of `edges`, for clients that need no cursors.")
    def nodes(self) -> list[Course]:
        return [Course(record=record) for record in self.page.items]


@strawberry.type
class Query(GenerationQuery, SyncQuery, AdminQuery):
    @strawberry.field(description="The logged-in user; null without a token.")
    def me(self, info: Info) -> Me | None:
        viewer = queries.me(info)
        if viewer is None:
            return None
        return Me(
            id=strawberry.ID(str(viewer.id)),
            email=viewer.email,
            display_name=viewer.display_name,
            tier=viewer.tier,
            role=viewer.role,
        )

    @strawberry.field(description="A course the viewer owns or that is shared with it.")
    async def course(self, info: Info, id: strawberry.ID) -> Course | None:
        record = await queries.course(info, id)
        return Course(record=record) if record else None

    @strawberry.field(description="The viewer's courses (owned and shared), a keyset page.")
    async def courses(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        filter: CourseFilterInput | None = None,
        order_by: CourseOrder = CourseOrder.CREATED_AT_DESC,
    ) -> CourseConnection:
        flt = CourseFilter(
            status=filter.status if filter else None,
            level=filter.level if filter else None,
            search=filter.search if filter else None,
        )
        page = await queries.courses(info, first=first, after=after, flt=flt, order=order_by)
        return CourseConnection(page=page, flt=flt)
