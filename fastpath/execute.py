"""Fetch what a compiled request needs, then render the response data as plain dicts.

Fetching is planned from the whole tree at once: which relations any selection asks for (a
course's subjects, a subject's topics, the viewer's progress, bookmarks and notes, members,
users) and which optional columns (a topic's `objectives` and `content`), each fetched with one
keyed statement for every parent in the response. Rendering is one generated function per
shape of selection (fastpath/codegen.py), no resolvers, no awaitables: the output equals the
normal executor's field for field (tests/test_fast_path.py checks it on generated queries).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

import orjson
from graphql import GraphQLEnumType, GraphQLSchema

from fastpath.codegen import Renderers
from fastpath.compile import Field
from fastpath.plan import Unsupported
from fastpath.topics_json import topic_selections, topics_query
from services.accounts import Viewer
from services.course_reads import ORDER_COLUMNS, CourseOrder, encode_cursor
from services.errors import DomainError
from services.tree_reads import PageQuery, Reader, Row
from services.validation import parse_id


def enum_names(schema: GraphQLSchema) -> dict[str, dict[Any, str]]:
    """Per GraphQL enum, stored value → GraphQL name (as the normal executor serializes)."""
    names: dict[str, dict[Any, str]] = {}
    for type_name, graphql_type in schema.type_map.items():
        if isinstance(graphql_type, GraphQLEnumType) and not type_name.startswith("__"):
            names[type_name] = {value.value: name for name, value in graphql_type.values.items()}
    return names


class Connection:
    """A page of courses as `Query.courses` returns it."""

    __slots__ = ("has_next_page", "order", "rows", "total")

    def __init__(self, order: CourseOrder, rows: list[Row], has_next: bool) -> None:
        self.order = order
        self.rows = rows
        self.has_next_page = has_next
        self.total: int | None = None


class Execution:
    """One request: its reader, its viewer, what was fetched, and the cost it rendered."""

    def __init__(self, reader: Reader, viewer: Viewer, renderers: Renderers) -> None:
        self.reader = reader
        self.viewer = viewer
        self.renderers = renderers
        self.access_names: dict[Any, str] = renderers.namespace["E_CourseAccess"]
        self.objects = 0
        self.count_fields = 0
        self.subjects: dict[Any, list[Row]] = {}
        self.topic_json: dict[Any, Row] = {}
        self.members: dict[Any, list[Row]] = {}
        self.users: dict[Any, Row] = {}

    # -- fetching -------------------------------------------------------------------------

    async def run(self, fields: list[Field]) -> dict[str, Any]:
        roots: dict[str, Any] = {}
        courses: list[Row] = []
        for f in fields:
            if f.name == "courses":
                connection = await self._courses(f)
                courses += connection.rows
                roots[f.key] = connection
            elif f.name == "course":
                rows = await self.reader.courses_by_ids(self.viewer.id, [_course_id(f)])
                courses += rows
                roots[f.key] = rows[0] if rows else None
        await self._fetch_related(fields, courses)
        for f in fields:
            if f.name == "me":
                roots[f.key] = self.viewer
        return self.renderers.get(fields)(self, roots)

    async def _courses(self, f: Field) -> Connection:
        page = _page_query(f)
        with_count = any(c.name == "totalCount" for c in f.children or ())
        result = await self.reader.course_page(self.viewer.id, page, with_count=with_count)
        connection = Connection(page.order, result.rows, result.has_next_page)
        connection.total = result.total
        return connection

    async def _fetch_related(self, fields: list[Field], courses: list[Row]) -> None:
        wanted: dict[str, set[str]] = defaultdict(set)
        _selected(fields, "Query", wanted)
        course_fields = wanted["Course"]
        course_ids = list({row["id"]: None for row in courses})
        if not course_ids:
            return
        if "subjects" in course_fields:
            self.subjects = _siblings(await self.reader.subjects(course_ids), "course_id")
        if "topics" in wanted["Subject"] and self.subjects:
            query = topics_query(topic_selections(fields))
            rows = await self.reader.topics_json(
                course_ids, self.viewer.id, query.aggregates, query.columns, query.progress
            )
            self.topic_json = {row["subject_id"]: row for row in rows}
        if course_fields & {"members", "viewerAccess"}:
            for row in await self.reader.members(course_ids):
                self.members.setdefault(row["course_id"], []).append(row)
        user_ids: set[Any] = set()
        if "owner" in course_fields:
            user_ids |= {row["owner_id"] for row in courses}
        if "members" in course_fields and "user" in wanted["Member"]:
            user_ids |= {m["user_id"] for group in self.members.values() for m in group}
        if user_ids:
            self.users = {row["id"]: row for row in await self.reader.users(list(user_ids))}

    # -- rendering (fastpath/codegen.py) ----------------------------------------------------

    def access(self, course: Row) -> str:
        if course["owner_id"] == self.viewer.id:
            return self.access_names["owner"]
        for member in self.members.get(course["id"], ()):
            if member["user_id"] == self.viewer.id:
                return self.access_names[member["role"]]
        raise Unsupported("access vanished")  # the normal executor reports NOT_FOUND

    def user(self, user_id: Any) -> Row:
        row = self.users.get(user_id)
        if row is None:
            raise Unsupported("user vanished")
        return row


def check_arguments(fields: list[Field]) -> None:
    """Raises Unsupported for root arguments the services would refuse (the normal executor
    reports them), before any SQL is sent."""
    for f in fields:
        if f.name == "courses":
            page = _page_query(f)
            try:
                page.validate()
            except DomainError:
                raise Unsupported("arguments") from None
        elif f.name == "course":
            _course_id(f)


def _page_query(f: Field) -> PageQuery:
    args = f.args
    flt = args.get("filter") or {}
    if flt.get("search") is not None:
        raise Unsupported("search")  # its matching rules live in the ORM query
    return PageQuery(
        first=args.get("first", 20),
        after=args.get("after"),
        order=CourseOrder(args.get("orderBy") or CourseOrder.CREATED_AT_DESC),
        status=flt.get("status"),
        level=flt.get("level"),
    )


def _course_id(f: Field) -> uuid.UUID:
    try:
        return parse_id(f.args["id"], "id")
    except DomainError:
        raise Unsupported("malformed id") from None


def _siblings(rows: list[Row], parent_column: str) -> dict[Any, list[Row]]:
    """Rows (grouped by parent and in sibling order, as the reader sorts them) by parent."""
    return {parent: list(group) for parent, group in groupby(rows, itemgetter(parent_column))}


def _selected(fields: list[Field], type_name: str, wanted: dict[str, set[str]]) -> None:
    for f in fields:
        wanted[type_name].add(f.name)
        if f.children is not None:
            _selected(f.children, f.type_name, wanted)


def _count(conn: Connection, ex: Execution) -> int:
    ex.count_fields += 1
    assert conn.total is not None
    return conn.total


def _cursor(conn: Connection, row: Row) -> str:
    return encode_cursor(conn.order, row[ORDER_COLUMNS[conn.order][0]], row["id"])


def _inc(ex: Execution) -> bool:
    ex.objects += 1
    return True


_NO_TOPICS = orjson.Fragment(b"[]")


def _topics(ex: Execution, subject_id: Any, index: int) -> orjson.Fragment:
    """The JSON of a subject's topics for one `topics` selection (fastpath/topics_json.py),
    and the objects it holds counted."""
    row = ex.topic_json.get(subject_id)
    if row is None:
        return _NO_TOPICS
    ex.objects += row[2 + 2 * index]
    return orjson.Fragment(row[1 + 2 * index])


def _n(items: Sequence[Any], ex: Execution) -> Sequence[Any]:
    ex.objects += len(items)
    return items


def render_namespace(enums: dict[str, dict[Any, str]]) -> dict[str, Any]:
    """What the generated render functions see (fastpath/codegen.py)."""
    namespace: dict[str, Any] = {f"E_{name}": values for name, values in enums.items()}
    namespace.update(_count=_count, _cursor=_cursor, _inc=_inc, _n=_n, _topics=_topics)
    return namespace
