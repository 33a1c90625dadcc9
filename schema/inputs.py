"""Mutation inputs: `fooBar` takes `input: FooBarInput!`."""

from __future__ import annotations

from typing import Any

import strawberry

from models import CourseLevel, MemberRole


def provided(obj: object) -> dict[str, Any]:
    """The input's fields that the client actually sent (left-out fields stay unchanged)."""
    return {
        name: value
        for name, value in vars(obj).items()
        if value is not strawberry.UNSET and not name.startswith("_")
    }


@strawberry.input
class SignUpInput:
    email: str
    password: str
    display_name: str


@strawberry.input
class LogInInput:
    email: str
    password: str
    device_token: str | None = strawberry.field(
        default=None,
        description="The `deviceToken` of an earlier log-in on this device: other clients' "
        "failed attempts do not refuse it.",
    )


@strawberry.input
class CreateCourseInput:
    title: str
    description: str | None = strawberry.UNSET
    level: CourseLevel | None = strawberry.UNSET
    language: str | None = strawberry.UNSET
    id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="A client-made UUID (offline clients); optional."
    )


@strawberry.input
class UpdateCourseInput:
    title: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    level: CourseLevel | None = strawberry.UNSET
    language: str | None = strawberry.UNSET


@strawberry.input
class AddSubjectInput:
    course_id: strawberry.ID
    title: str
    summary: str | None = strawberry.UNSET
    after_subject_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="Place it after this subject; default: at the end."
    )


@strawberry.input
class AddTopicInput:
    subject_id: strawberry.ID
    title: str
    objectives: list[str] | None = strawberry.UNSET
    content: str | None = strawberry.UNSET
    estimated_minutes: int | None = strawberry.UNSET
    after_topic_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="Place it after this topic; default: at the end."
    )


@strawberry.input
class UpdateTopicInput:
    topic_id: strawberry.ID
    title: str | None = strawberry.UNSET
    objectives: list[str] | None = strawberry.UNSET
    content: str | None = strawberry.UNSET
    estimated_minutes: int | None = strawberry.UNSET


@strawberry.input(description="Move a topic after or before a sibling; neither: to the end.")
class MoveTopicInput:
    topic_id: strawberry.ID
    subject_id: strawberry.ID
    after_topic_id: strawberry.ID | None = None
    before_topic_id: strawberry.ID | None = None


@strawberry.input
class ShareCourseInput:
    course_id: strawberry.ID
    email: str
    role: MemberRole = MemberRole.VIEWER


@strawberry.input
class UnshareCourseInput:
    course_id: strawberry.ID
    user_id: strawberry.ID


@strawberry.input
class CompleteTopicInput:
    topic_id: strawberry.ID
    score: int | None = None


@strawberry.input
class UncompleteTopicInput:
    topic_id: strawberry.ID


@strawberry.input
class BookmarkTopicInput:
    topic_id: strawberry.ID


@strawberry.input
class UnbookmarkTopicInput:
    topic_id: strawberry.ID


@strawberry.input(description="Create a note (topicId) or edit one (noteId).")
class SaveNoteInput:
    body: str
    topic_id: strawberry.ID | None = None
    note_id: strawberry.ID | None = None
    expected_version: int | None = strawberry.field(
        default=None, description="Refuse the edit if the note moved past this version."
    )
