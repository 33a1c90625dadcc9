"""Who may see and change a course: its owner, and the members it is shared with."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from tortoise.expressions import Q, Subquery

from models import Course, CourseMember, MemberRole
from services.errors import forbidden, not_found


class Access(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"


async def visible_courses_scope(user_id: uuid.UUID) -> Q:
    """The live courses `user_id` may see, as a filter an index can serve (one statement).

    `owner_id = $1 OR id IN (SELECT … FROM course_members …)` makes PostgreSQL scan every
    course of every user; the shared ids fetched first turn it into two index lookups.
    """
    shared = await CourseMember.filter(user_id=user_id).values_list("course_id", flat=True)
    mine = Q(owner_id=user_id)
    return Q(deleted_at=None) & (mine | Q(id__in=list(shared)) if shared else mine)


def visible_courses_sql(user_id: uuid.UUID) -> tuple[str, list[Any]]:
    """The rule of `visible_courses_scope` as SQL over `courses` for the plain-SQL readers
    (services/tree_reads.py): a WHERE clause with $-placeholders and its arguments. The
    shared ids are an array computed once (an InitPlan), so both arms can use an index."""
    return (
        "deleted_at IS NULL AND (owner_id = $1 OR id = ANY(ARRAY("
        "SELECT course_id FROM course_members WHERE user_id = $1)))",
        [user_id],
    )


def visible_courses_q(user_id: uuid.UUID) -> Q:
    """A filter for the live courses `user_id` may see; for lookups already narrowed by id."""
    shared = Subquery(CourseMember.filter(user_id=user_id).values("course_id"))
    return Q(deleted_at=None) & (Q(owner_id=user_id) | Q(id__in=shared))


def access_of(course: Course, user_id: uuid.UUID, member_role: str | None) -> Access | None:
    if course.owner_id == user_id:
        return Access.OWNER
    if member_role == MemberRole.EDITOR:
        return Access.EDITOR
    if member_role == MemberRole.VIEWER:
        return Access.VIEWER
    return None


async def course_access(
    course_id: uuid.UUID, user_id: uuid.UUID, *, for_update: bool = False
) -> tuple[Course, Access]:
    """The live course and the user's access to it; NOT_FOUND when the user may not see it.

    With `for_update`, the course row is locked for the caller's transaction, so writes to one
    course aggregate are serialized (PostgreSQL; SQLite has one writer anyway).
    """
    query = Course.filter(id=course_id, deleted_at=None)
    if for_update:
        query = query.select_for_update()
    course = await query.first()
    if course is None:
        raise not_found("course", field="id")
    role: str | None = None
    if course.owner_id != user_id:
        roles = await CourseMember.filter(course_id=course_id, user_id=user_id).values_list(
            "role", flat=True
        )
        role = str(roles[0]) if roles else None
    access = access_of(course, user_id, role)
    if access is None:
        raise not_found("course", field="id")
    return course, access


def require_edit(access: Access) -> None:
    if access is Access.VIEWER:
        raise forbidden("This course is shared with you read-only.")


def require_owner(access: Access) -> None:
    if access is not Access.OWNER:
        raise forbidden("Only the course's owner may do this.")
