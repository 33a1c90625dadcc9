"""Mutation resolvers: authenticate, parse ids, call one service, return its records."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from models import MemberRole
from services import accounts, course_reads, courses, learning
from services.accounts import TokenPair
from services.records import (
    CourseRecord,
    MemberRecord,
    NoteRecord,
    SubjectRecord,
    TopicRecord,
)
from services.validation import parse_id

if TYPE_CHECKING:
    from strawberry.types import Info

    from resolvers.context import RequestContext


def _context(info: Info) -> RequestContext:
    return info.context


def _viewer_id(info: Info) -> uuid.UUID:
    return _context(info).require_viewer().id


def _optional_id(value: Any, field: str) -> uuid.UUID | None:
    return None if value is None else parse_id(value, field)


def _client_ip(info: Info) -> str | None:
    client = getattr(_context(info).request, "client", None)
    return getattr(client, "host", None)


async def sign_up(info: Info, email: str, password: str, display_name: str) -> TokenPair:
    context = _context(info)
    return await accounts.sign_up(
        context.settings,
        email,
        password,
        display_name,
        limits=context.rate_limits,
        client_ip=_client_ip(info),
    )


async def log_in(
    info: Info, email: str, password: str, device_token: str | None = None
) -> TokenPair:
    context = _context(info)
    return await accounts.log_in(
        context.settings,
        email,
        password,
        limits=context.rate_limits,
        client_ip=_client_ip(info),
        device_token=device_token,
    )


async def refresh_token(info: Info, token: str) -> TokenPair:
    return await accounts.refresh(_context(info).settings, token)


async def log_out(info: Info, everywhere: bool = False) -> None:
    await accounts.log_out(_context(info).require_viewer(), everywhere=everywhere)


async def create_course(info: Info, data: dict[str, Any]) -> CourseRecord:
    viewer_id = _viewer_id(info)
    course_id = _optional_id(data.pop("id", None), "input.id")
    return await courses.create_course(viewer_id, data, course_id)


async def update_course(
    info: Info, course_id: str, data: dict[str, Any], expected_version: int
) -> CourseRecord:
    viewer_id = _viewer_id(info)
    return await courses.update_course(viewer_id, parse_id(course_id, "id"), data, expected_version)


async def delete_course(info: Info, course_id: str) -> uuid.UUID:
    viewer_id = _viewer_id(info)
    return await courses.delete_course(viewer_id, parse_id(course_id, "id"))


async def add_subject(info: Info, data: dict[str, Any]) -> SubjectRecord:
    viewer_id = _viewer_id(info)
    course_id = parse_id(data.pop("course_id"), "input.courseId")
    after = _optional_id(data.pop("after_subject_id", None), "input.afterSubjectId")
    return await courses.add_subject(viewer_id, course_id, data, after)


async def add_topic(info: Info, data: dict[str, Any]) -> TopicRecord:
    viewer_id = _viewer_id(info)
    subject_id = parse_id(data.pop("subject_id"), "input.subjectId")
    after = _optional_id(data.pop("after_topic_id", None), "input.afterTopicId")
    return await courses.add_topic(viewer_id, subject_id, data, after)


async def update_topic(info: Info, data: dict[str, Any]) -> TopicRecord:
    viewer_id = _viewer_id(info)
    topic_id = parse_id(data.pop("topic_id"), "input.topicId")
    return await courses.update_topic(viewer_id, topic_id, data)


async def move_topic(
    info: Info, topic_id: str, subject_id: str, after: str | None, before: str | None
) -> TopicRecord:
    viewer_id = _viewer_id(info)
    return await courses.move_topic(
        viewer_id,
        parse_id(topic_id, "input.topicId"),
        parse_id(subject_id, "input.subjectId"),
        _optional_id(after, "input.afterTopicId"),
        _optional_id(before, "input.beforeTopicId"),
    )


async def share_course(info: Info, course_id: str, email: str, role: MemberRole) -> MemberRecord:
    viewer_id = _viewer_id(info)
    return await courses.share_course(viewer_id, parse_id(course_id, "input.courseId"), email, role)


async def unshare_course(info: Info, course_id: str, user_id: str) -> tuple[uuid.UUID, uuid.UUID]:
    viewer_id = _viewer_id(info)
    course = parse_id(course_id, "input.courseId")
    member = parse_id(user_id, "input.userId")
    await courses.unshare_course(viewer_id, course, member)
    return course, member


async def set_completion(
    info: Info, topic_id: str, completed: bool, score: int | None = None
) -> TopicRecord:
    viewer_id = _viewer_id(info)
    topic = parse_id(topic_id, "input.topicId")
    await learning.set_completion(viewer_id, topic, completed, score)
    return await course_reads.topic_by_id(topic)


async def set_bookmark(info: Info, topic_id: str, bookmarked: bool) -> TopicRecord:
    viewer_id = _viewer_id(info)
    topic = parse_id(topic_id, "input.topicId")
    await learning.set_bookmark(viewer_id, topic, bookmarked)
    return await course_reads.topic_by_id(topic)


async def save_note(
    info: Info,
    body: str,
    note_id: str | None,
    topic_id: str | None,
    expected_version: int | None,
) -> NoteRecord:
    viewer_id = _viewer_id(info)
    return await learning.save_note(
        viewer_id,
        body=body,
        note_id=_optional_id(note_id, "input.noteId"),
        topic_id=_optional_id(topic_id, "input.topicId"),
        expected_version=expected_version,
    )


async def delete_note(info: Info, note_id: str) -> uuid.UUID:
    viewer_id = _viewer_id(info)
    return await learning.delete_note(viewer_id, parse_id(note_id, "id"))
