"""Object types of the course tree and accounts, built from the services' read records."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

import schema.enums  # noqa: F401  -- names the domain enums for GraphQL before use
from models import CourseLevel, CourseStatus, MemberRole, UserRole, UserTier
from resolvers import course_fields
from services.permissions import Access
from services.records import (
    CourseRecord,
    MemberRecord,
    NoteRecord,
    ProgressRecord,
    SubjectRecord,
    TopicRecord,
    UserRecord,
)


@strawberry.type
class User:
    id: strawberry.ID
    display_name: str

    @classmethod
    def from_record(cls, record: UserRecord) -> User:
        return cls(id=strawberry.ID(str(record.id)), display_name=record.display_name)


@strawberry.type(description="The logged-in user, with what only it may see of itself.")
class Me:
    id: strawberry.ID
    email: str
    display_name: str
    tier: UserTier
    role: UserRole


@strawberry.type
class Progress:
    completed: bool
    completed_at: datetime | None
    score: int | None

    @classmethod
    def from_record(cls, record: ProgressRecord) -> Progress:
        return cls(completed=record.completed, completed_at=record.completed_at, score=record.score)


@strawberry.type
class Note:
    id: strawberry.ID
    topic_id: strawberry.ID
    body: str
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, record: NoteRecord) -> Note:
        return cls(
            id=strawberry.ID(str(record.id)),
            topic_id=strawberry.ID(str(record.topic_id)),
            body=record.body,
            version=record.version,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


@strawberry.type
class Topic:
    record: strawberry.Private[TopicRecord]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.record.id))

    @strawberry.field
    def subject_id(self) -> strawberry.ID:
        return strawberry.ID(str(self.record.subject_id))

    @strawberry.field
    def course_id(self) -> strawberry.ID:
        return strawberry.ID(str(self.record.course_id))

    @strawberry.field(description="0-based index among the subject's topics.")
    def position(self) -> int:
        return self.record.position

    @strawberry.field
    def title(self) -> str:
        return self.record.title

    @strawberry.field
    def objectives(self) -> list[str]:
        return list(self.record.objectives)

    @strawberry.field(description="Markdown.")
    def content(self) -> str:
        return self.record.content

    @strawberry.field
    def estimated_minutes(self) -> int:
        return self.record.estimated_minutes

    # The viewer's own state. Subject.topics prefetches it for a whole page in three batched
    # statements, so these fields complete synchronously (no awaitable per topic and field);
    # a Topic built elsewhere (a mutation's result) loads it through the same loaders.
    state: strawberry.Private[course_fields.ViewerTopicState | None] = None

    @strawberry.field(description="The viewer's progress on this topic.")
    def progress(self, info: Info) -> Progress | None:
        if self.state is None:
            return _progress_later(info, self.record)  # type: ignore[return-value]
        return Progress.from_record(self.state.progress) if self.state.progress else None

    @strawberry.field(description="Whether the viewer bookmarked this topic.")
    def bookmarked(self, info: Info) -> bool:
        if self.state is None:
            return course_fields.bookmarked(info, self.record)  # type: ignore[return-value]
        return self.state.bookmarked

    @strawberry.field(description="The viewer's own notes on this topic.")
    def notes(self, info: Info) -> list[Note]:
        if self.state is None:
            return _notes_later(info, self.record)  # type: ignore[return-value]
        return [Note.from_record(n) for n in self.state.notes]


# Sync resolvers may return an awaitable: graphql-core awaits it.
async def _progress_later(info: Info, record: TopicRecord) -> Progress | None:
    progress = await course_fields.progress(info, record)
    return Progress.from_record(progress) if progress else None


async def _notes_later(info: Info, record: TopicRecord) -> list[Note]:
    return [Note.from_record(n) for n in await course_fields.notes(info, record)]


@strawberry.type
class Subject:
    record: strawberry.Private[SubjectRecord]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.record.id))

    @strawberry.field
    def course_id(self) -> strawberry.ID:
        return strawberry.ID(str(self.record.course_id))

    @strawberry.field(description="0-based index among the course's subjects.")
    def position(self) -> int:
        return self.record.position

    @strawberry.field
    def title(self) -> str:
        return self.record.title

    @strawberry.field
    def summary(self) -> str:
        return self.record.summary

    @strawberry.field
    async def topics(self, info: Info) -> list[Topic]:
        records = await course_fields.topics(info, self.record)
        states = await course_fields.viewer_states(info, records)
        return [Topic(record=r, state=state) for r, state in zip(records, states, strict=True)]


@strawberry.type
class Member:
    record: strawberry.Private[MemberRecord]

    @strawberry.field
    def role(self) -> MemberRole:
        return MemberRole(self.record.role)

    @strawberry.field
    def added_at(self) -> datetime:
        return self.record.created_at

    @strawberry.field
    async def user(self, info: Info) -> User:
        return User.from_record(await course_fields.user(info, self.record.user_id))


@strawberry.type
class Course:
    record: strawberry.Private[CourseRecord]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.record.id))

    @strawberry.field
    def title(self) -> str:
        return self.record.title

    @strawberry.field
    def description(self) -> str:
        return self.record.description

    @strawberry.field
    def level(self) -> CourseLevel:
        return CourseLevel(self.record.level)

    @strawberry.field
    def language(self) -> str:
        return self.record.language

    @strawberry.field
    def status(self) -> CourseStatus:
        return CourseStatus(self.record.status)

    @strawberry.field(description="Bumped by every change; pass it back as expectedVersion.")
    def version(self) -> int:
        return self.record.version

    @strawberry.field
    def created_at(self) -> datetime:
        return self.record.created_at

    @strawberry.field
    def updated_at(self) -> datetime:
        return self.record.updated_at

    @strawberry.field
    async def owner(self, info: Info) -> User:
        return User.from_record(await course_fields.user(info, self.record.owner_id))

    @strawberry.field
    async def members(self, info: Info) -> list[Member]:
        return [Member(record=m) for m in await course_fields.members(info, self.record)]

    @strawberry.field(description="What the viewer may do with this course.")
    async def viewer_access(self, info: Info) -> Access:
        return await course_fields.access(info, self.record)

    @strawberry.field
    async def subjects(self, info: Info) -> list[Subject]:
        return [Subject(record=s) for s in await course_fields.subjects(info, self.record)]


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class CourseEdge:
    cursor: str
    node: Course
