"""Plain read models handed from services to the API (no ORM instances on hot paths)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class CourseRecord:
    id: uuid.UUID
    owner_id: uuid.UUID
    title: str
    description: str
    level: str
    language: str
    status: str
    version: int
    created_at: datetime
    updated_at: datetime

    FIELDS = (
        "id",
        "owner_id",
        "title",
        "description",
        "level",
        "language",
        "status",
        "version",
        "created_at",
        "updated_at",
    )


@dataclass(slots=True)
class SubjectRecord:
    id: uuid.UUID
    course_id: uuid.UUID
    rank: str
    title: str
    summary: str
    position: int = 0

    FIELDS = ("id", "course_id", "rank", "title", "summary")


@dataclass(slots=True)
class TopicRecord:
    id: uuid.UUID
    subject_id: uuid.UUID
    course_id: uuid.UUID
    rank: str
    title: str
    objectives: list[str]
    content: str
    estimated_minutes: int
    position: int = 0

    FIELDS = (
        "id",
        "subject_id",
        "course_id",
        "rank",
        "title",
        "objectives",
        "content",
        "estimated_minutes",
    )


@dataclass(slots=True)
class MemberRecord:
    course_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    created_at: datetime

    FIELDS = ("course_id", "user_id", "role", "created_at")


@dataclass(slots=True)
class UserRecord:
    id: uuid.UUID
    email: str
    display_name: str
    tier: str
    role: str

    FIELDS = ("id", "email", "display_name", "tier", "role")


@dataclass(slots=True)
class ProgressRecord:
    topic_id: uuid.UUID
    completed: bool
    completed_at: datetime | None
    score: int | None

    FIELDS = ("topic_id", "completed", "completed_at", "score")


@dataclass(slots=True)
class NoteRecord:
    id: uuid.UUID
    topic_id: uuid.UUID
    body: str
    version: int
    created_at: datetime
    updated_at: datetime

    FIELDS = ("id", "topic_id", "body", "version", "created_at", "updated_at")


def as_uuid(value: Any) -> uuid.UUID:
    # SQLite hands UUID columns back as strings from .values().
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
