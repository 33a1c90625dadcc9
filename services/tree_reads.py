"""Reads of the course tree in plain SQL on one pooled asyncpg connection (PostgreSQL only).

The fast GraphQL executor (fastpath/) reads through these instead of the ORM: rows come back
as asyncpg records, columns chosen by what the query asks, keyed by parent ids, so a page of
courses with its syllabus costs a few statements and no model instances. The rules are the
ones of services/course_reads.py and services/permissions.py (what a user may see, keyset
order and cursors, sibling order); tests/test_fast_path.py checks the two paths agree.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from tortoise import connections

from observability.sql import count_statement
from services.course_reads import MAX_PAGE, ORDER_COLUMNS, CourseOrder, decode_cursor
from services.errors import invalid
from services.permissions import visible_courses_sql
from services.records import CourseRecord, SubjectRecord

Row = Any  # an asyncpg Record: indexable by column name and by position

sql_log = logging.getLogger("coursegen.sql")

# The columns of the read records the normal executor's loaders read (services/records.py).
COURSE_COLUMNS = CourseRecord.FIELDS
SUBJECT_COLUMNS = SubjectRecord.FIELDS


def supports(connection: Any) -> bool:
    """Whether the connection is PostgreSQL over asyncpg (the one these reads are written for)."""
    return type(connection).__module__.startswith("tortoise.backends.asyncpg")


@asynccontextmanager
async def reader() -> AsyncIterator[Reader]:
    """One pooled connection for the reads of one request."""
    client = connections.get("default")
    async with client.acquire_connection() as connection:
        yield Reader(connection)


@dataclass(frozen=True, slots=True)
class PageQuery:
    first: int
    after: str | None
    order: CourseOrder
    status: str | None
    level: str | None

    def validate(self) -> None:
        """Raises INVALID_INPUT as services.course_reads.list_courses does."""
        if not 0 <= self.first <= MAX_PAGE:
            raise invalid(f"first: between 0 and {MAX_PAGE}.", field="first")
        if self.after:
            decode_cursor(self.order, self.after)


@dataclass(slots=True)
class CoursePageRows:
    rows: list[Row]
    has_next_page: bool
    total: int | None = None


class TopicJSON:
    """What SQL that renders topics (fastpath/topics_json.py) may use: the rows `x`, one per
    topic of the page's courses with the columns asked for, `position` (0-based, in sibling
    order) and the viewer's ($2) progress joined (`progress_topic_id`, `completed`,
    `completed_at`, `score`); and the viewer's bookmark and notes of a topic."""

    HAS_PROGRESS = "x.progress_topic_id IS NOT NULL"
    BOOKMARKED = "EXISTS (SELECT 1 FROM bookmarks b WHERE b.user_id = $2 AND b.topic_id = x.id)"
    # The viewer's live notes of the topic, ordered as services.learning orders them.
    _NOTES = "FROM notes n WHERE n.user_id = $2 AND n.topic_id = x.id AND n.deleted_at IS NULL"
    NOTES_COUNT = f"(SELECT count(*) {_NOTES})"

    @classmethod
    def notes(cls, note_object: str) -> str:
        return (
            f"(SELECT coalesce(json_agg({note_object} ORDER BY n.created_at, n.id), '[]'::json) "
            f"{cls._NOTES})"
        )

    @staticmethod
    def iso(column: str) -> str:
        """A timestamp as Python's `datetime.isoformat()` writes it in UTC (the normal
        executor's format): microseconds only when there are some."""
        utc = f"({column} AT TIME ZONE 'UTC')"
        return (
            f"CASE WHEN {column} IS NOT NULL THEN to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
            f"CASE WHEN date_part('microseconds', {column})::bigint % 1000000 = 0 THEN '' "
            f"ELSE to_char({utc}, '.US') END || '+00:00' END"
        )


class _LoggedConnection:
    """Sends statements on the asyncpg connection; logs each at DEBUG on `coursegen.sql` (as
    Tortoise logs its own on `tortoise.db_client`), so tests count them."""

    __slots__ = ("connection",)

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        _note(sql)
        return list(await self.connection.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        _note(sql)
        return await self.connection.fetchval(sql, *args)


def _note(sql: str) -> None:
    count_statement()  # the per-request count of /metrics and the access log
    if sql_log.isEnabledFor(logging.DEBUG):
        sql_log.debug("%s", sql)


class Reader:
    def __init__(self, connection: Any) -> None:
        self.connection = _LoggedConnection(connection)

    @staticmethod
    def _visible(user_id: uuid.UUID, page: PageQuery) -> tuple[str, list[Any]]:
        where, args = visible_courses_sql(user_id)
        if page.status is not None:
            args.append(page.status)
            where += f" AND status = ${len(args)}"
        if page.level is not None:
            args.append(page.level)
            where += f" AND level = ${len(args)}"
        return where, args

    async def course_page(
        self, user_id: uuid.UUID, page: PageQuery, *, with_count: bool
    ) -> CoursePageRows:
        """A keyset page (as services.course_reads.list_courses), with the count of every
        course matching the filter in the same statement when asked."""
        page.validate()
        column, descending = ORDER_COLUMNS[page.order]
        where, args = self._visible(user_id, page)
        # Built from constants and $-placeholders only.
        count = f", (SELECT count(*) FROM courses WHERE {where}) AS total"  # noqa: S608
        count = count if with_count else ""
        if page.after:
            value, after_id = decode_cursor(page.order, page.after)
            op = "<" if descending else ">"
            args += [value, after_id]
            a, b = len(args) - 1, len(args)
            where += f" AND ({column} {op} ${a} OR ({column} = ${a} AND id {op} ${b}))"
        direction = " DESC" if descending else ""
        args.append(page.first + 1)
        sql = (
            f"SELECT {', '.join(COURSE_COLUMNS)}{count} FROM courses "  # noqa: S608
            f"WHERE {where} ORDER BY {column}{direction}, id{direction} LIMIT ${len(args)}"
        )
        rows = await self.connection.fetch(sql, *args)
        result = CoursePageRows(rows=rows[: page.first], has_next_page=len(rows) > page.first)
        if with_count:
            # An empty page holds no row to carry the count: then it is asked on its own.
            result.total = rows[0]["total"] if rows else await self._count(user_id, page)
        return result

    async def _count(self, user_id: uuid.UUID, page: PageQuery) -> int:
        where, args = self._visible(user_id, page)
        sql = f"SELECT count(*) FROM courses WHERE {where}"  # noqa: S608 -- built from constants
        return int(await self.connection.fetchval(sql, *args))

    async def courses_by_ids(self, user_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> list[Row]:
        where, args = visible_courses_sql(user_id)
        args.append(list(ids))
        sql = (
            f"SELECT {', '.join(COURSE_COLUMNS)} FROM courses "  # noqa: S608
            f"WHERE id = ANY(${len(args)}::uuid[]) AND {where}"
        )
        return await self.connection.fetch(sql, *args)

    # Siblings come grouped by parent, each group in sibling order (services.ranks.sibling_key):
    # ranks compared as bytes (the "C" collation), ties by id (uuid order is the order of its
    # text). Everything below
    # is keyed by the page's course ids (a few parameters, not one per topic): a topic's
    # `course_id` is its subject's (topics move only between subjects of their course,
    # services/courses.move_topic), so the topics of the courses are their subjects' topics.

    async def subjects(self, course_ids: Sequence[Any]) -> list[Row]:
        return await self.connection.fetch(
            f"SELECT {', '.join(SUBJECT_COLUMNS)} FROM subjects "  # noqa: S608
            'WHERE course_id = ANY($1::uuid[]) ORDER BY course_id, rank COLLATE "C", id',
            course_ids,
        )

    async def topics_json(
        self,
        course_ids: Sequence[Any],
        viewer_id: uuid.UUID,
        aggregates: Sequence[str],
        columns: Collection[str],
        progress: bool,
    ) -> list[Row]:
        """One row per subject of the courses that has topics: `subject_id`, then each of
        `aggregates` (SQL over the rows `x` that `TopicJSON` describes, with the topic
        `columns` and, with `progress`, the viewer's progress joined)."""
        inner = [f"t.{column}" for column in sorted(columns)]
        inner.append(
            'row_number() OVER (PARTITION BY t.subject_id ORDER BY t.rank COLLATE "C", t.id)'
            " - 1 AS position"
        )
        join = ""
        if progress:
            inner += ["p.topic_id AS progress_topic_id", "p.completed", "p.completed_at", "p.score"]
            join = " LEFT JOIN topic_progress p ON p.topic_id = t.id AND p.user_id = $2"
        selected = ", ".join(f"{sql} AS a{i}" for i, sql in enumerate(aggregates))
        return await self.connection.fetch(
            f"SELECT x.subject_id, {selected} FROM (SELECT {', '.join(inner)} "  # noqa: S608
            f"FROM topics t{join} WHERE t.course_id = ANY($1::uuid[]) AND $2::uuid IS NOT NULL"
            ") x GROUP BY x.subject_id",
            course_ids,
            viewer_id,
        )

    async def members(self, course_ids: Sequence[Any]) -> list[Row]:
        # Ordered as services.course_reads.members_by_course_ids orders them.
        return await self.connection.fetch(
            "SELECT course_id, user_id, role, created_at FROM course_members "
            "WHERE course_id = ANY($1::uuid[]) ORDER BY created_at, user_id",
            course_ids,
        )

    async def users(self, user_ids: Sequence[Any]) -> list[Row]:
        return await self.connection.fetch(
            "SELECT id, display_name FROM users WHERE id = ANY($1::uuid[])", user_ids
        )
