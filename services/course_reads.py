"""Batched reads of the course tree, keyed for dataloaders: one statement per batch."""

from __future__ import annotations

import base64
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from tortoise.expressions import Q, Subquery

from models import Course, CourseLevel, CourseMember, CourseStatus, Subject, Topic, User
from services.errors import invalid
from services.permissions import visible_courses_q, visible_courses_scope
from services.ranks import sibling_key
from services.records import (
    CourseRecord,
    MemberRecord,
    SubjectRecord,
    TopicRecord,
    UserRecord,
)
from services.validation import clean_text

MAX_PAGE = 100


class CourseOrder(StrEnum):
    CREATED_AT_DESC = "created_at_desc"
    CREATED_AT_ASC = "created_at_asc"
    UPDATED_AT_DESC = "updated_at_desc"
    TITLE_ASC = "title_asc"


# order -> (column, descending)
ORDER_COLUMNS: dict[CourseOrder, tuple[str, bool]] = {
    CourseOrder.CREATED_AT_DESC: ("created_at", True),
    CourseOrder.CREATED_AT_ASC: ("created_at", False),
    CourseOrder.UPDATED_AT_DESC: ("updated_at", True),
    CourseOrder.TITLE_ASC: ("title", False),
}


@dataclass(frozen=True, slots=True)
class CourseFilter:
    status: CourseStatus | None = None
    level: CourseLevel | None = None
    search: str | None = None


@dataclass(slots=True)
class CoursePage:
    items: list[CourseRecord]
    has_next_page: bool
    # What the viewer may see, reused by the page's totalCount.
    scope: Q
    cursors: list[str] = field(default_factory=list)

    @property
    def end_cursor(self) -> str | None:
        return self.cursors[-1] if self.cursors else None


def encode_cursor(order: CourseOrder, value: Any, course_id: uuid.UUID | str) -> str:
    """The opaque cursor of a course in `order`: its sort value and id, bound to the order."""
    raw = [order.value, value.isoformat() if isinstance(value, datetime) else value, str(course_id)]
    return base64.urlsafe_b64encode(orjson.dumps(raw)).decode().rstrip("=")


def _record_cursor(order: CourseOrder, record: CourseRecord) -> str:
    return encode_cursor(order, getattr(record, ORDER_COLUMNS[order][0]), record.id)


def decode_cursor(order: CourseOrder, cursor: str) -> tuple[Any, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        cursor_order, value, course_id = orjson.loads(base64.urlsafe_b64decode(padded))
        if cursor_order != order.value:
            raise ValueError("cursor from another order")
        column, _ = ORDER_COLUMNS[order]
        if column.endswith("_at"):
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError("naive timestamp")
        elif not isinstance(value, str):
            raise ValueError("bad value")
        if not isinstance(course_id, str):
            raise ValueError("bad id")
        return value, uuid.UUID(course_id)
    except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
        raise invalid(
            "The cursor is not valid for this query; start again without `after`.", field="after"
        ) from None


def _filtered(scope: Q, flt: CourseFilter) -> Any:
    query = Course.filter(scope)
    if flt.status is not None:
        query = query.filter(status=flt.status)
    if flt.level is not None:
        query = query.filter(level=flt.level)
    if flt.search:
        term = clean_text(flt.search)
        if len(term) > 100:
            raise invalid("search: at most 100 characters.", field="filter.search")
        if term:
            query = query.filter(Q(title__icontains=term) | Q(description__icontains=term))
    return query


async def list_courses(
    user_id: uuid.UUID,
    *,
    first: int,
    after: str | None,
    flt: CourseFilter,
    order: CourseOrder,
) -> CoursePage:
    """A keyset page of the courses the user may see."""
    if not 0 <= first <= MAX_PAGE:
        raise invalid(f"first: between 0 and {MAX_PAGE}.", field="first")
    column, descending = ORDER_COLUMNS[order]
    scope = await visible_courses_scope(user_id)
    query = _filtered(scope, flt)
    if after:
        value, after_id = decode_cursor(order, after)
        op = "lt" if descending else "gt"
        query = query.filter(
            Q(**{f"{column}__{op}": value}) | Q(**{column: value, f"id__{op}": after_id})
        )
    direction = "-" if descending else ""
    rows = (
        await query.order_by(f"{direction}{column}", f"{direction}id")
        .limit(first + 1)
        .values(*CourseRecord.FIELDS)
    )
    items = [CourseRecord(**row) for row in rows[:first]]
    return CoursePage(
        items=items,
        has_next_page=len(rows) > first,
        scope=scope,
        cursors=[_record_cursor(order, item) for item in items],
    )


async def count_courses(scope: Q, flt: CourseFilter) -> int:
    return int(await _filtered(scope, flt).count())


async def courses_by_ids(
    user_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, CourseRecord]:
    """The courses among `ids` that the user may see."""
    rows = await Course.filter(visible_courses_q(user_id), id__in=list(ids)).values(
        *CourseRecord.FIELDS
    )
    return {row["id"]: CourseRecord(**row) for row in rows}


def _by_rank(records: list[Any]) -> list[Any]:
    records.sort(key=lambda r: sibling_key(r.rank, r.id))
    for position, record in enumerate(records):
        record.position = position
    return records


async def subjects_by_course_ids(
    ids: Iterable[uuid.UUID],
) -> dict[uuid.UUID, list[SubjectRecord]]:
    grouped: dict[uuid.UUID, list[SubjectRecord]] = defaultdict(list)
    for row in await Subject.filter(course_id__in=list(ids)).values(*SubjectRecord.FIELDS):
        grouped[row["course_id"]].append(SubjectRecord(**row))
    return {key: _by_rank(value) for key, value in grouped.items()}


async def topics_by_subject_ids(
    ids: Iterable[uuid.UUID],
) -> dict[uuid.UUID, list[TopicRecord]]:
    grouped: dict[uuid.UUID, list[TopicRecord]] = defaultdict(list)
    for row in await Topic.filter(subject_id__in=list(ids)).values(*TopicRecord.FIELDS):
        grouped[row["subject_id"]].append(TopicRecord(**row))
    return {key: _by_rank(value) for key, value in grouped.items()}


async def members_by_course_ids(
    ids: Iterable[uuid.UUID],
) -> dict[uuid.UUID, list[MemberRecord]]:
    grouped: dict[uuid.UUID, list[MemberRecord]] = defaultdict(list)
    rows = (
        await CourseMember.filter(course_id__in=list(ids))
        .order_by("created_at", "user_id")
        .values(*MemberRecord.FIELDS)
    )
    for row in rows:
        grouped[row["course_id"]].append(MemberRecord(**row))
    return grouped


async def users_by_ids(ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, UserRecord]:
    rows = await User.filter(id__in=list(ids)).values(*UserRecord.FIELDS)
    return {row["id"]: UserRecord(**row) for row in rows}


async def topic_by_id(topic_id: uuid.UUID) -> TopicRecord:
    """One topic with its position among its siblings (one statement)."""
    siblings = Topic.filter(subject_id__in=Subquery(Topic.filter(id=topic_id).values("subject_id")))
    records = _by_rank([TopicRecord(**row) for row in await siblings.values(*TopicRecord.FIELDS)])
    for record in records:
        if record.id == topic_id:
            return record
    raise LookupError(f"topic {topic_id} vanished")
