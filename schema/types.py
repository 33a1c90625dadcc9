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

    @strawberry.field(description="The viewer's progress on this topic.")
    async def progress(self, info: Info) -> Progress | None:
        record = await course_fields.progress(info, self.record)
        return Progress.from_record(record) if record else None

    @strawberry.field(description="Whether the viewer bookmarked this topic.")
    async def bookmarked(self, info: Info) -> bool:
        return await course_fields.bookmarked(info, self.record)

    @strawberry.field(description="The viewer's own notes on this topic.")
    async def notes(self, info: Info) -> list[Note]:
        return [Note.from_record(n) for n in await course_fields.notes(info, self.record)]


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
        return [Topic(record=t) for t in await course_fields.topics(info, self.record)]


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
