"""Changes to the course aggregate: courses, subjects, topics, sharing.

Every change runs in one transaction that locks the course row and bumps its `version`, so
concurrent writers to one course are serialized and clients can detect stale copies.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from models import Course, CourseLevel, CourseMember, CourseStatus, MemberRole, Subject, Topic, User
from services import scopes
from services.errors import DomainError, ErrorCode, invalid, not_found
from services.permissions import Access, course_access, require_edit, require_owner
from services.ranks import rank_after, rank_between, sort_key
from services.records import CourseRecord, MemberRecord, SubjectRecord, TopicRecord
from services.validation import clean_text, validated

TITLE = Field(min_length=1, max_length=200)
OPTIONAL_TITLE = Field(default=None, min_length=1, max_length=200)
LANGUAGE_PATTERN = r"^[A-Za-z-]+$"


def _check_objectives(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    cleaned = [clean_text(item) for item in value]
    if any(not item or len(item) > 300 for item in cleaned):
        raise ValueError("each objective: 1 to 300 characters")
    return cleaned


class _Clean(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _strip_controls(cls, value: object) -> object:
        return clean_text(value) if isinstance(value, str) else value


class CourseDraft(_Clean):
    title: str = TITLE
    description: str = Field(default="", max_length=5000)
    level: CourseLevel = CourseLevel.BEGINNER
    language: str = Field(default="en", min_length=2, max_length=16, pattern=LANGUAGE_PATTERN)


class CourseChanges(_Clean):
    title: str | None = OPTIONAL_TITLE
    description: str | None = Field(default=None, max_length=5000)
    level: CourseLevel | None = None
    language: str | None = Field(
        default=None, min_length=2, max_length=16, pattern=LANGUAGE_PATTERN
    )


class SubjectDraft(_Clean):
    title: str = TITLE
    summary: str = Field(default="", max_length=5000)


class TopicDraft(_Clean):
    title: str = TITLE
    objectives: list[str] = Field(default_factory=list, max_length=20)
    content: str = Field(default="", max_length=200_000)
    estimated_minutes: int = Field(default=10, ge=1, le=600)

    _objectives = field_validator("objectives")(_check_objectives)


class TopicChanges(_Clean):
    title: str | None = OPTIONAL_TITLE
    objectives: list[str] | None = Field(default=None, max_length=20)
    content: str | None = Field(default=None, max_length=200_000)
    estimated_minutes: int | None = Field(default=None, ge=1, le=600)

    _objectives = field_validator("objectives")(_check_objectives)


def _now() -> datetime:
    return datetime.now(UTC)


def _record(course: Course) -> CourseRecord:
    return CourseRecord(**{name: getattr(course, name) for name in CourseRecord.FIELDS})


def _subject_record(subject: Subject, position: int = 0) -> SubjectRecord:
    data = {name: getattr(subject, name) for name in SubjectRecord.FIELDS}
    return SubjectRecord(**data, position=position)


def _topic_record(topic: Topic, position: int = 0) -> TopicRecord:
    data = {name: getattr(topic, name) for name in TopicRecord.FIELDS}
    return TopicRecord(**data, position=position)


async def _bump(course: Course) -> None:
    """Stamp a change of the aggregate (inside the caller's transaction)."""
    now = _now()
    await Course.filter(id=course.id).update(version=F("version") + 1, updated_at=now)
    course.version += 1
    course.updated_at = now


async def _stamp_topic(topic: Topic) -> None:
    await scopes.stamp(
        scopes.course_scope(topic.course_id), put=[("topic", topic.id, scopes.topic_data(topic))]
    )


async def create_course(
    user_id: uuid.UUID, data: dict[str, Any], course_id: uuid.UUID | None = None
) -> CourseRecord:
    draft = validated(CourseDraft, data, prefix="input.")
    try:
        async with scopes.transaction():
            course = await Course.create(
                id=course_id or uuid.uuid4(),
                owner_id=user_id,
                status=CourseStatus.DRAFT,
                **draft.model_dump(),
            )
            await scopes.stamp(
                scopes.course_scope(course.id),
                put=[("course", course.id, scopes.course_data(course))],
            )
    except IntegrityError:
        # A client-made id already in use (found by schemathesis: it was a masked error).
        existing = await Course.filter(id=course_id).first() if course_id else None
        if existing is None:
            raise
        if existing.owner_id == user_id and existing.deleted_at is None:
            return _record(existing)  # the same creation again (a retry): it happened once
        raise invalid("That id is taken; make a new one.", field="input.id") from None
    return _record(course)


async def update_course(
    user_id: uuid.UUID, course_id: uuid.UUID, data: dict[str, Any], expected_version: int
) -> CourseRecord:
    changes = validated(CourseChanges, data, prefix="input.").model_dump(exclude_unset=True)
    if any(value is None for value in changes.values()):
        raise invalid("Fields may be left out but not set to null.", field="input")
    async with scopes.transaction():
        course, access = await course_access(course_id, user_id, for_update=True)
        require_edit(access)
        if course.version != expected_version:
            raise DomainError(
                ErrorCode.VERSION_CONFLICT,
                f"The course changed since version {expected_version}; it is now at version "
                f"{course.version}. Reload it and apply your change again.",
                field="expectedVersion",
                current_version=course.version,
            )
        if changes:
            now = _now()
            await Course.filter(id=course.id).update(
                **changes, version=F("version") + 1, updated_at=now
            )
            for name, value in changes.items():
                setattr(course, name, value)
            course.version += 1
            course.updated_at = now
            await scopes.stamp(
                scopes.course_scope(course.id),
                put=[("course", course.id, scopes.course_data(course))],
            )
        return _record(course)


async def delete_course(user_id: uuid.UUID, course_id: uuid.UUID) -> uuid.UUID:
    async with scopes.transaction():
        course, access = await course_access(course_id, user_id, for_update=True)
        require_owner(access)
        now = _now()
        await Course.filter(id=course.id).update(
            deleted_at=now, version=F("version") + 1, updated_at=now
        )
        await scopes.stamp(scopes.course_scope(course.id), delete=[("course", course.id)])
    return course_id


async def add_subject(
    user_id: uuid.UUID,
    course_id: uuid.UUID,
    data: dict[str, Any],
    after_subject_id: uuid.UUID | None = None,
) -> SubjectRecord:
    draft = validated(SubjectDraft, data, prefix="input.")
    async with scopes.transaction():
        course, access = await course_access(course_id, user_id, for_update=True)
        require_edit(access)
        siblings = sorted(
            await Subject.filter(course_id=course_id).values("id", "rank"),
            key=lambda row: sort_key(row["rank"]),
        )
        rank, position = _rank_after_sibling(siblings, after_subject_id, "input.afterSubjectId")
        subject = await Subject.create(course_id=course_id, rank=rank, **draft.model_dump())
        await _bump(course)
        await scopes.stamp(
            scopes.course_scope(course.id),
            put=[("subject", subject.id, scopes.subject_data(subject))],
        )
        return _subject_record(subject, position)


def _rank_after_sibling(
    siblings: list[dict[str, Any]], after_id: uuid.UUID | None, field: str
) -> tuple[str, int]:
    """Rank and position for an item placed right after `after_id` (None: at the end)."""
    if after_id is None:
        return rank_after(siblings[-1]["rank"] if siblings else None), len(siblings)
    for index, row in enumerate(siblings):
        if row["id"] == after_id:
            following = siblings[index + 1]["rank"] if index + 1 < len(siblings) else None
            return rank_between(row["rank"], following), index + 1
    raise invalid("The item to place after is not in this list.", field=field)


async def _subject_with_access(
    user_id: uuid.UUID, subject_id: uuid.UUID, field: str
) -> tuple[Subject, Course, Access]:
    subject = await Subject.get_or_none(id=subject_id)
    if subject is None:
        raise not_found("subject", field=field)
    try:
        course, access = await course_access(
            subject.course_id,
            user_id,
            for_update=True,
        )
    except DomainError:
        raise not_found("subject", field=field) from None
    return subject, course, access


async def topic_with_access(
    user_id: uuid.UUID, topic_id: uuid.UUID, *, for_update: bool = False
) -> tuple[Topic, Course, Access]:
    """The topic and the user's access to its course; NOT_FOUND when it may not see it."""
    topic = await Topic.get_or_none(id=topic_id)
    if topic is None:
        raise not_found("topic", field="topicId")
    try:
        course, access = await course_access(
            topic.course_id,
            user_id,
            for_update=for_update,
        )
    except DomainError:
        raise not_found("topic", field="topicId") from None
    return topic, course, access


async def add_topic(
    user_id: uuid.UUID,
    subject_id: uuid.UUID,
    data: dict[str, Any],
    after_topic_id: uuid.UUID | None = None,
) -> TopicRecord:
    draft = validated(TopicDraft, data, prefix="input.")
    async with scopes.transaction():
        subject, course, access = await _subject_with_access(user_id, subject_id, "input.subjectId")
        require_edit(access)
        siblings = sorted(
            await Topic.filter(subject_id=subject_id).values("id", "rank"),
            key=lambda row: sort_key(row["rank"]),
        )
        rank, position = _rank_after_sibling(siblings, after_topic_id, "input.afterTopicId")
        topic = await Topic.create(
            subject_id=subject.id, course_id=course.id, rank=rank, **draft.model_dump()
        )
        await _bump(course)
        await _stamp_topic(topic)
        return _topic_record(topic, position)


async def update_topic(
    user_id: uuid.UUID, topic_id: uuid.UUID, data: dict[str, Any]
) -> TopicRecord:
    changes = validated(TopicChanges, data, prefix="input.").model_dump(exclude_unset=True)
    if any(value is None for value in changes.values()):
        raise invalid("Fields may be left out but not set to null.", field="input")
    async with scopes.transaction():
        topic, course, access = await topic_with_access(user_id, topic_id, for_update=True)
        require_edit(access)
        if changes:
            await Topic.filter(id=topic.id).update(**changes, updated_at=_now())
            for name, value in changes.items():
                setattr(topic, name, value)
            await _bump(course)
            await _stamp_topic(topic)
        position = await _position_of(topic)
        return _topic_record(topic, position)


async def _position_of(topic: Topic) -> int:
    ranks = await Topic.filter(subject_id=topic.subject_id).values_list("rank", flat=True)
    mine = sort_key(topic.rank)
    return sum(1 for rank in ranks if sort_key(str(rank)) < mine)


async def move_topic(
    user_id: uuid.UUID,
    topic_id: uuid.UUID,
    subject_id: uuid.UUID,
    after_topic_id: uuid.UUID | None = None,
    before_topic_id: uuid.UUID | None = None,
) -> TopicRecord:
    """Place a topic after or before a sibling in `subject_id` (neither: at the end).

    The intent is applied to today's order, so concurrent moves of different topics both hold.
    """
    if after_topic_id is not None and before_topic_id is not None:
        raise invalid("Give afterTopicId or beforeTopicId, not both.", field="input")
    if topic_id in (after_topic_id, before_topic_id):
        raise invalid("A topic cannot be placed next to itself.", field="input")
    async with scopes.transaction():
        topic, course, access = await topic_with_access(user_id, topic_id, for_update=True)
        require_edit(access)
        target = await Subject.get_or_none(id=subject_id, course_id=course.id)
        if target is None:
            raise not_found("subject in this course", field="input.subjectId")
        siblings = sorted(
            await Topic.filter(subject_id=subject_id).exclude(id=topic_id).values("id", "rank"),
            key=lambda row: sort_key(row["rank"]),
        )
        if before_topic_id is not None:
            index = next(
                (i for i, row in enumerate(siblings) if row["id"] == before_topic_id), None
            )
            if index is None:
                raise invalid("The topic to place before is not in this subject.", "input")
            previous = siblings[index - 1]["rank"] if index > 0 else None
            rank, position = rank_between(previous, siblings[index]["rank"]), index
        else:
            rank, position = _rank_after_sibling(siblings, after_topic_id, "input.afterTopicId")
        await Topic.filter(id=topic.id).update(subject_id=subject_id, rank=rank, updated_at=_now())
        topic.subject_id = subject_id
        topic.rank = rank
        await _bump(course)
        await _stamp_topic(topic)
        return _topic_record(topic, position)


async def share_course(
    user_id: uuid.UUID, course_id: uuid.UUID, email: str, role: MemberRole
) -> MemberRecord:
    async with scopes.transaction():
        course, access = await course_access(course_id, user_id, for_update=True)
        require_owner(access)
        other = await User.get_or_none(email=clean_text(email).lower())
        if other is None:
            raise not_found("user with that email", field="input.email")
        if other.id == user_id:
            raise invalid("You already own this course.", field="input.email")
        member = await CourseMember.get_or_none(course_id=course_id, user_id=other.id)
        if member is None:
            member = await CourseMember.create(course_id=course_id, user_id=other.id, role=role)
        elif member.role != role:
            member.role = role
            await member.save(update_fields=["role"])
        await _bump(course)
        await scopes.stamp(
            scopes.course_scope(course.id), put=[("member", other.id, scopes.member_data(member))]
        )
        return MemberRecord(
            course_id=course_id, user_id=other.id, role=member.role, created_at=member.created_at
        )


async def unshare_course(user_id: uuid.UUID, course_id: uuid.UUID, member_id: uuid.UUID) -> None:
    async with scopes.transaction():
        course, access = await course_access(course_id, user_id, for_update=True)
        # A member may also leave a course shared with it.
        if member_id != user_id:
            require_owner(access)
        deleted = await CourseMember.filter(course_id=course_id, user_id=member_id).delete()
        if not deleted:
            raise not_found("member of this course", field="input.userId")
        await _bump(course)
        await scopes.stamp(scopes.course_scope(course.id), delete=[("member", member_id)])
