"""Field resolvers of the course tree: every nested read goes through a request loader."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from services.errors import DomainError, ErrorCode
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

if TYPE_CHECKING:
    from strawberry.types import Info

    from resolvers.context import RequestContext


def _context(info: Info) -> RequestContext:
    return info.context


async def subjects(info: Info, course: CourseRecord) -> list[SubjectRecord]:
    return await _context(info).loaders.subjects_by_course_id.load(course.id)


async def topics(info: Info, subject: SubjectRecord) -> list[TopicRecord]:
    return await _context(info).loaders.topics_by_subject_id.load(subject.id)


async def members(info: Info, course: CourseRecord) -> list[MemberRecord]:
    return await _context(info).loaders.members_by_course_id.load(course.id)


async def user(info: Info, user_id: uuid.UUID) -> UserRecord:
    record = await _context(info).loaders.user_by_id.load(user_id)
    if record is None:  # a foreign key guarantees it; a miss is a bug, not a client error
        raise LookupError(f"user {user_id} missing")
    return record


async def access(info: Info, course: CourseRecord) -> Access:
    viewer = _context(info).require_viewer()
    if course.owner_id == viewer.id:
        return Access.OWNER
    for member in await members(info, course):
        if member.user_id == viewer.id:
            return Access(member.role)
    raise DomainError(ErrorCode.NOT_FOUND, "No course with that id.")


async def progress(info: Info, topic: TopicRecord) -> ProgressRecord | None:
    return await _context(info).loaders.progress_by_topic_id.load(topic.id)


async def bookmarked(info: Info, topic: TopicRecord) -> bool:
    return await _context(info).loaders.bookmarked_by_topic_id.load(topic.id)


async def notes(info: Info, topic: TopicRecord) -> list[NoteRecord]:
    return await _context(info).loaders.notes_by_topic_id.load(topic.id)
