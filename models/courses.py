"""The course aggregate: a course, its members, its subjects and their topics."""

from __future__ import annotations

import uuid
from enum import StrEnum

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class CourseLevel(StrEnum):
    BEGINNER = "beginner"
    INTERMEDIATE = "intermediate"
    ADVANCED = "advanced"


class CourseStatus(StrEnum):
    DRAFT = "draft"
    GENERATING = "generating"
    READY = "ready"
    FAILED = "failed"
    ARCHIVED = "archived"


class MemberRole(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"


class Course(Model):
    id = fields.UUIDField(primary_key=True)
    owner: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="courses", on_delete=fields.CASCADE
    )
    owner_id: uuid.UUID  # set by Tortoise; declared for type checkers
    title = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    level = fields.CharEnumField(CourseLevel, default=CourseLevel.BEGINNER, max_length=16)
    language = fields.CharField(max_length=16, default="en")
    status = fields.CharEnumField(CourseStatus, default=CourseStatus.DRAFT, max_length=16)
    # Optimistic concurrency: bumped by every change to the aggregate.
    version = fields.IntField(default=1)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    # Tombstone: a deleted course stays for sync (DEL patches) and is invisible to queries.
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "courses"
        indexes = (
            # the dashboard's keyset pages, one per sort order
            Index(fields=("owner_id", "created_at", "id"), name="ix_courses_owner_created"),
            Index(fields=("owner_id", "updated_at", "id"), name="ix_courses_owner_updated"),
            Index(fields=("owner_id", "title", "id"), name="ix_courses_owner_title"),
        )


class CourseMember(Model):
    id = fields.UUIDField(primary_key=True)
    course: fields.ForeignKeyRelation[Course] = fields.ForeignKeyField(
        "models.Course", related_name="members", on_delete=fields.CASCADE
    )
    course_id: uuid.UUID  # set by Tortoise; declared for type checkers
    user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="memberships", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID  # set by Tortoise; declared for type checkers
    role = fields.CharEnumField(MemberRole, default=MemberRole.VIEWER, max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "course_members"
        unique_together = (("course", "user"),)
        indexes = (Index(fields=("user_id", "course_id"), name="ix_course_members_user"),)


class Subject(Model):
    id = fields.UUIDField(primary_key=True)
    course: fields.ForeignKeyRelation[Course] = fields.ForeignKeyField(
        "models.Course", related_name="subjects", on_delete=fields.CASCADE
    )
    course_id: uuid.UUID  # set by Tortoise; declared for type checkers
    # Fractional index (compared as bytes): inserting between two never renumbers siblings.
    rank = fields.CharField(max_length=64)
    title = fields.CharField(max_length=200)
    summary = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "subjects"
        indexes = (Index(fields=("course_id", "rank"), name="ix_subjects_course_rank"),)


class Topic(Model):
    id = fields.UUIDField(primary_key=True)
    subject: fields.ForeignKeyRelation[Subject] = fields.ForeignKeyField(
        "models.Subject", related_name="topics", on_delete=fields.CASCADE
    )
    subject_id: uuid.UUID  # set by Tortoise; declared for type checkers
    # Denormalised so authorization and sync scopes need no join through subjects.
    course: fields.ForeignKeyRelation[Course] = fields.ForeignKeyField(
        "models.Course", related_name="topics", on_delete=fields.CASCADE
    )
    course_id: uuid.UUID  # set by Tortoise; declared for type checkers
    rank = fields.CharField(max_length=64)
    title = fields.CharField(max_length=200)
    objectives: fields.JSONField[list[str]] = fields.JSONField(default=list)
    content = fields.TextField(default="")
    estimated_minutes = fields.IntField(default=10)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "topics"
        indexes = (
            Index(fields=("subject_id", "rank"), name="ix_topics_subject_rank"),
            Index(fields=("course_id",), name="ix_topics_course"),
        )
