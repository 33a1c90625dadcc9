"""Tortoise ORM models, one module per aggregate, and the database lifecycle (`models.db`)."""

from models.accounts import AuthSession, RefreshToken, User, UserRole, UserTier
from models.courses import (
    Course,
    CourseLevel,
    CourseMember,
    CourseStatus,
    MemberRole,
    Subject,
    Topic,
)
from models.generation import GenerationJob, JobStatus
from models.learning import Bookmark, Note, TopicProgress
from models.sync import (
    SyncClient,
    SyncClientGroup,
    SyncEntry,
    SyncMutationResult,
    SyncRejection,
    SyncScope,
)
from models.usage import ModelUsage

__all__ = [
    "AuthSession",
    "Bookmark",
    "Course",
    "CourseLevel",
    "CourseMember",
    "CourseStatus",
    "GenerationJob",
    "JobStatus",
    "MemberRole",
    "ModelUsage",
    "Note",
    "RefreshToken",
    "Subject",
    "SyncClient",
    "SyncClientGroup",
    "SyncEntry",
    "SyncMutationResult",
    "SyncRejection",
    "SyncScope",
    "Topic",
    "TopicProgress",
    "User",
    "UserRole",
    "UserTier",
]
