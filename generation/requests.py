"""The validated form of a user's request for a course."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ai.writer import CourseRequest
from models import CourseLevel
from services.validation import clean_text, validated


class GenerateCourseData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: str = Field(min_length=3, max_length=200)
    audience: str = Field(default="curious learners", min_length=1, max_length=200)
    level: CourseLevel = CourseLevel.BEGINNER
    language: str = Field(default="en", min_length=2, max_length=16, pattern=r"^[A-Za-z-]+$")
    subject_count: int = Field(default=4, ge=1, le=12)
    topics_per_subject: int = Field(default=4, ge=1, le=12)
    notes: str = Field(default="", max_length=2000)

    @field_validator("topic", "audience", "notes", mode="before")
    @classmethod
    def _strip_controls(cls, value: object) -> object:
        return clean_text(value) if isinstance(value, str) else value


def parse_request(data: dict[str, Any]) -> CourseRequest:
    """INVALID_INPUT naming the field, or the request to store with the job."""
    clean = validated(GenerateCourseData, data, prefix="input.")
    return CourseRequest(
        topic=clean.topic,
        audience=clean.audience,
        level=clean.level.value,
        language=clean.language,
        subject_count=clean.subject_count,
        topics_per_subject=clean.topics_per_subject,
        notes=clean.notes,
    )
