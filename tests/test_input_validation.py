"""Bad input is INVALID_INPUT naming its field and changes nothing; unexpected errors are masked;
stale versions are VERSION_CONFLICT.

The mutation documents, `mutate` and the database `snapshot` come from test_authorization.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from models import Course, Note, Subject, Topic
from services import course_reads, courses, tree_reads
from tests.support import TestUser as Account
from tests.support import Tree, gql, make_course, sign_up
from tests.test_authorization import NOT_COVERED_HERE, mutate, snapshot

BAD_ID = "not-a-uuid"
COURSE_TITLE = "A course about input"


@dataclass
class Setup:
    user: Account
    other: Account
    tree: Tree
    note_id: str


@pytest.fixture
async def setup(client: httpx.AsyncClient) -> Setup:
    user = await sign_up(client)
    other = await sign_up(client)
    tree = await make_course(user.id, COURSE_TITLE, subjects=2, topics=3)
    note, body = await mutate(
        client,
        "saveNote",
        {"input": {"topicId": str(tree.topic_ids[0]), "body": "first words"}},
        user.token,
    )
    assert note["__typename"] == "SaveNoteSuccess", body
    return Setup(user, other, tree, str(note["note"]["id"]))


def _c(s: Setup) -> str:
    return str(s.tree.course_id)


def _s(s: Setup, index: int = 0) -> str:
    return str(s.tree.subject_ids[index])


def _t(s: Setup, index: int = 0) -> str:
    return str(s.tree.topic_ids[index])


# --------------------------------------------------------------------------------------------
# B) bad input in mutations: INVALID_INPUT with the field, nothing changed
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    mutation: str
    variables: Callable[[Setup], dict[str, Any]]
    # The `field` the error must name (either of them, where two are equally right).
    fields: tuple[str, ...]


def _update_course(changes: dict[str, Any]) -> Callable[[Setup], dict[str, Any]]:
    return lambda s: {"id": _c(s), "input": changes, "expectedVersion": 1}


def _on_topic(fields: dict[str, Any]) -> Callable[[Setup], dict[str, Any]]:
    """`input` naming the first topic, with these other fields."""
    return lambda s: {"input": {"topicId": _t(s), **fields}}


def _move(fields: dict[str, Any]) -> Callable[[Setup], dict[str, Any]]:
    """moveTopic's `input` taking the first topic to the second subject, with these fields."""
    return lambda s: {"input": {"topicId": _t(s), "subjectId": _s(s, 1), **fields}}


def _add_topic(extra: dict[str, Any]) -> Callable[[Setup], dict[str, Any]]:
    return lambda s: {"input": {"subjectId": _s(s), "title": "New", **extra}}


LONG_TITLE = "t" * 201

BAD_VALUES: dict[str, Bad] = {
    # overlong and empty text
    "createCourse-title-too-long": Bad(
        "createCourse", lambda s: {"input": {"title": LONG_TITLE}}, ("input.title",)
    ),
    "createCourse-title-empty": Bad(
        "createCourse", lambda s: {"input": {"title": ""}}, ("input.title",)
    ),
    "createCourse-title-only-blanks-and-controls": Bad(
        "createCourse", lambda s: {"input": {"title": " \x00\x07\t "}}, ("input.title",)
    ),
    "createCourse-description-too-long": Bad(
        "createCourse",
        lambda s: {"input": {"title": "Fine", "description": "d" * 5001}},
        ("input.description",),
    ),
    "createCourse-language-malformed": Bad(
        "createCourse",
        lambda s: {"input": {"title": "Fine", "language": "en; DROP"}},
        ("input.language",),
    ),
    "updateCourse-title-too-long": Bad(
        "updateCourse", _update_course({"title": LONG_TITLE}), ("input.title",)
    ),
    "updateCourse-title-empty": Bad(
        "updateCourse", _update_course({"title": ""}), ("input.title",)
    ),
    "updateCourse-description-too-long": Bad(
        "updateCourse", _update_course({"description": "d" * 5001}), ("input.description",)
    ),
    "addSubject-title-too-long": Bad(
        "addSubject",
        lambda s: {"input": {"courseId": _c(s), "title": LONG_TITLE}},
        ("input.title",),
    ),
    "addSubject-title-empty": Bad(
        "addSubject", lambda s: {"input": {"courseId": _c(s), "title": ""}}, ("input.title",)
    ),
    "addSubject-summary-too-long": Bad(
        "addSubject",
        lambda s: {"input": {"courseId": _c(s), "title": "Fine", "summary": "s" * 5001}},
        ("input.summary",),
    ),
    "addTopic-title-too-long": Bad(
        "addTopic",
        lambda s: {"input": {"subjectId": _s(s), "title": LONG_TITLE}},
        ("input.title",),
    ),
    "addTopic-title-empty": Bad(
        "addTopic", lambda s: {"input": {"subjectId": _s(s), "title": ""}}, ("input.title",)
    ),
    "addTopic-objective-too-long": Bad(
        "addTopic", _add_topic({"objectives": ["o" * 301]}), ("input.objectives",)
    ),
    "updateTopic-title-too-long": Bad(
        "updateTopic", _on_topic({"title": LONG_TITLE}), ("input.title",)
    ),
    "updateTopic-title-empty": Bad("updateTopic", _on_topic({"title": ""}), ("input.title",)),
    "saveNote-create-body-too-long": Bad(
        "saveNote",
        lambda s: {"input": {"topicId": _t(s, 1), "body": "b" * 20_001}},
        ("input.body",),
    ),
    "saveNote-edit-body-too-long": Bad(
        "saveNote",
        lambda s: {"input": {"noteId": s.note_id, "body": "b" * 20_001}},
        ("input.body",),
    ),
    "saveNote-body-empty": Bad(
        "saveNote", lambda s: {"input": {"topicId": _t(s, 1), "body": " \x00 "}}, ("input.body",)
    ),
    # numbers out of range
    **{
        f"addTopic-estimatedMinutes-{minutes}": Bad(
            "addTopic", _add_topic({"estimatedMinutes": minutes}), ("input.estimatedMinutes",)
        )
        for minutes in (0, -5, 601)
    },
    **{
        f"updateTopic-estimatedMinutes-{minutes}": Bad(
            "updateTopic",
            _on_topic({"estimatedMinutes": minutes}),
            ("input.estimatedMinutes",),
        )
        for minutes in (0, -5, 601)
    },
    **{
        f"completeTopic-score-{score}": Bad(
            "completeTopic",
            _on_topic({"score": score}),
            ("input.score",),
        )
        for score in (-1, 101)
    },
    # explicit null where a field may be left out but not cleared
    **{
        f"updateCourse-null-{name}": Bad(
            "updateCourse", _update_course({name: None}), ("input", f"input.{name}")
        )
        for name in ("title", "description", "level", "language")
    },
    **{
        f"updateTopic-null-{name}": Bad(
            "updateTopic", _on_topic({name: None}), ("input", f"input.{name}")
        )
        for name in ("title", "objectives", "content", "estimatedMinutes")
    },
    # contradictory placement
    "moveTopic-after-and-before": Bad(
        "moveTopic",
        lambda s: {
            "input": {
                "topicId": _t(s),
                "subjectId": _s(s),
                "afterTopicId": _t(s, 1),
                "beforeTopicId": _t(s, 2),
            }
        },
        ("input",),
    ),
    "moveTopic-next-to-itself": Bad(
        "moveTopic",
        lambda s: {"input": {"topicId": _t(s), "subjectId": _s(s), "afterTopicId": _t(s)}},
        ("input",),
    ),
}

MALFORMED_IDS: dict[str, Bad] = {
    "createCourse-input.id": Bad(
        "createCourse", lambda s: {"input": {"title": "Fine", "id": BAD_ID}}, ("input.id",)
    ),
    "updateCourse-id": Bad(
        "updateCourse",
        lambda s: {"id": BAD_ID, "input": {"title": "Fine"}, "expectedVersion": 1},
        ("id",),
    ),
    "deleteCourse-id": Bad("deleteCourse", lambda s: {"id": BAD_ID}, ("id",)),
    "addSubject-input.courseId": Bad(
        "addSubject",
        lambda s: {"input": {"courseId": BAD_ID, "title": "Fine"}},
        ("input.courseId",),
    ),
    "addSubject-input.afterSubjectId": Bad(
        "addSubject",
        lambda s: {"input": {"courseId": _c(s), "title": "Fine", "afterSubjectId": BAD_ID}},
        ("input.afterSubjectId",),
    ),
    "addTopic-input.subjectId": Bad(
        "addTopic",
        lambda s: {"input": {"subjectId": BAD_ID, "title": "Fine"}},
        ("input.subjectId",),
    ),
    "addTopic-input.afterTopicId": Bad(
        "addTopic", _add_topic({"afterTopicId": BAD_ID}), ("input.afterTopicId",)
    ),
    "updateTopic-input.topicId": Bad(
        "updateTopic", lambda s: {"input": {"topicId": BAD_ID, "title": "Fine"}}, ("input.topicId",)
    ),
    **{
        f"moveTopic-input.{name}": Bad(
            "moveTopic",
            _move({name: BAD_ID}),
            (f"input.{name}",),
        )
        for name in ("topicId", "subjectId", "afterTopicId", "beforeTopicId")
    },
    "shareCourse-input.courseId": Bad(
        "shareCourse",
        lambda s: {"input": {"courseId": BAD_ID, "email": s.other.email}},
        ("input.courseId",),
    ),
    "unshareCourse-input.courseId": Bad(
        "unshareCourse",
        lambda s: {"input": {"courseId": BAD_ID, "userId": str(s.other.id)}},
        ("input.courseId",),
    ),
    "unshareCourse-input.userId": Bad(
        "unshareCourse",
        lambda s: {"input": {"courseId": _c(s), "userId": BAD_ID}},
        ("input.userId",),
    ),
    **{
        f"{mutation}-input.topicId": Bad(
            mutation, lambda s: {"input": {"topicId": BAD_ID}}, ("input.topicId",)
        )
        for mutation in ("completeTopic", "uncompleteTopic", "bookmarkTopic", "unbookmarkTopic")
    },
    "saveNote-input.topicId": Bad(
        "saveNote", lambda s: {"input": {"topicId": BAD_ID, "body": "Fine"}}, ("input.topicId",)
    ),
    "saveNote-input.noteId": Bad(
        "saveNote", lambda s: {"input": {"noteId": BAD_ID, "body": "Fine"}}, ("input.noteId",)
    ),
    "deleteNote-id": Bad("deleteNote", lambda s: {"id": BAD_ID}, ("id",)),
}


@pytest.mark.parametrize("name", [*BAD_VALUES, *MALFORMED_IDS])
async def test_bad_input_is_invalid_and_changes_nothing(
    client: httpx.AsyncClient, setup: Setup, name: str
) -> None:
    bad = {**BAD_VALUES, **MALFORMED_IDS}[name]
    before = await snapshot()

    result, body = await mutate(client, bad.mutation, bad.variables(setup), setup.user.token)

    assert result["__typename"] == "InvalidInputError", body
    assert result["code"] == "INVALID_INPUT"
    assert result["field"] in bad.fields, body
    assert result["message"]
    assert await snapshot() == before


TYPE_REF = "type { kind name ofType { kind name ofType { kind name } } }"
ID_ARGUMENTS_QUERY = f"""
{{
  __schema {{
    mutationType {{ fields {{ name args {{ name {TYPE_REF} }} }} }}
    types {{ name inputFields {{ name {TYPE_REF} }} }}
  }}
}}
"""


def _named(ref: dict[str, Any]) -> str:
    while ref["name"] is None:
        ref = ref["ofType"]
    return str(ref["name"])


async def test_every_id_argument_has_a_malformed_id_case(client: httpx.AsyncClient) -> None:
    """Each ID argument and ID input field of the mutations here is in MALFORMED_IDS."""
    schema = (await gql(client, ID_ARGUMENTS_QUERY))["data"]["__schema"]
    inputs = {t["name"]: t["inputFields"] for t in schema["types"] if t["inputFields"]}
    expected: set[tuple[str, str]] = set()
    for mutation in schema["mutationType"]["fields"]:
        if mutation["name"] in NOT_COVERED_HERE:
            continue
        for arg in mutation["args"]:
            if _named(arg["type"]) == "ID":
                expected.add((mutation["name"], arg["name"]))
            for field in inputs.get(_named(arg["type"]), []):
                if _named(field["type"]) == "ID":
                    expected.add((mutation["name"], f"{arg['name']}.{field['name']}"))
    assert {(bad.mutation, bad.fields[0]) for bad in MALFORMED_IDS.values()} == expected


# --------------------------------------------------------------------------------------------
# Control characters are stripped from stored text
# --------------------------------------------------------------------------------------------

DIRTY = "Intro\x00\x07 course\x1b"
CLEAN = "Intro course"


async def _course_title(result: dict[str, Any]) -> str:
    return (await Course.get(id=result["course"]["id"])).title


async def _subject_title(result: dict[str, Any]) -> str:
    return (await Subject.get(id=result["subject"]["id"])).title


async def _topic_title(result: dict[str, Any]) -> str:
    return (await Topic.get(id=result["topic"]["id"])).title


async def _note_body(result: dict[str, Any]) -> str:
    return (await Note.get(id=result["note"]["id"])).body


@dataclass(frozen=True)
class Dirty:
    mutation: str
    variables: Callable[[Setup], dict[str, Any]]
    stored: Callable[[dict[str, Any]], Awaitable[str]]  # the text as stored
    expected: str = CLEAN


DIRTY_CASES: dict[str, Dirty] = {
    "createCourse": Dirty("createCourse", lambda s: {"input": {"title": DIRTY}}, _course_title),
    "updateCourse": Dirty("updateCourse", _update_course({"title": DIRTY}), _course_title),
    "addSubject": Dirty(
        "addSubject", lambda s: {"input": {"courseId": _c(s), "title": DIRTY}}, _subject_title
    ),
    "addTopic": Dirty(
        "addTopic", lambda s: {"input": {"subjectId": _s(s), "title": DIRTY}}, _topic_title
    ),
    "updateTopic": Dirty("updateTopic", _on_topic({"title": DIRTY}), _topic_title),
    # Notes keep their line breaks and tabs; only the other control characters go.
    "saveNote": Dirty(
        "saveNote",
        lambda s: {"input": {"topicId": _t(s, 1), "body": "Line\x00 one\n\tline\x7f two"}},
        _note_body,
        expected="Line one\n\tline two",
    ),
}


@pytest.mark.parametrize("name", list(DIRTY_CASES))
async def test_control_characters_are_stripped(
    client: httpx.AsyncClient, setup: Setup, name: str
) -> None:
    case = DIRTY_CASES[name]
    result, body = await mutate(client, case.mutation, case.variables(setup), setup.user.token)
    assert result["__typename"].endswith("Success"), body
    assert await case.stored(result) == case.expected


# --------------------------------------------------------------------------------------------
# Bad arguments of queries: a GraphQL error with extensions.code INVALID_INPUT
# --------------------------------------------------------------------------------------------


def _cursor(raw: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(raw)).decode().rstrip("=")


A_DATE = "2024-01-01T00:00:00+00:00"

BAD_CURSORS = {
    "garbage": "garbage",
    "not-ascii": "caf\u00e9",
    "not-json": base64.urlsafe_b64encode(b"{{{").decode(),
    "json-null": _cursor(None),
    "short-list": _cursor(["created_at_desc", A_DATE]),
    "other-order": _cursor(["title_asc", "A", str(uuid.uuid4())]),
    "bad-date": _cursor(["created_at_desc", "yesterday", str(uuid.uuid4())]),
    "naive-date": _cursor(["created_at_desc", "2024-01-01T00:00:00", str(uuid.uuid4())]),
    "bad-uuid": _cursor(["created_at_desc", A_DATE, "not-a-uuid"]),
    "number-as-id": _cursor(["created_at_desc", A_DATE, 5]),
    "list-as-id": _cursor(["created_at_desc", A_DATE, ["x"]]),
}

COURSES_PAGE = """
query Page($first: Int!, $after: String, $filter: CourseFilterInput) {
  courses(first: $first, after: $after, filter: $filter) { totalCount nodes { id } }
}
"""


@dataclass(frozen=True)
class BadQuery:
    document: str
    variables: dict[str, Any]
    field: str


BAD_QUERIES: dict[str, BadQuery] = {
    "course-malformed-id": BadQuery('query { course(id: "not-a-uuid") { id } }', {}, "id"),
    "courses-first-negative": BadQuery(COURSES_PAGE, {"first": -1}, "first"),
    "courses-first-101": BadQuery(COURSES_PAGE, {"first": 101}, "first"),
    "courses-search-too-long": BadQuery(
        COURSES_PAGE, {"first": 10, "filter": {"search": "s" * 101}}, "filter.search"
    ),
    **{
        f"courses-after-{name}": BadQuery(COURSES_PAGE, {"first": 10, "after": cursor}, "after")
        for name, cursor in BAD_CURSORS.items()
    },
}


@pytest.mark.parametrize("name", list(BAD_QUERIES))
async def test_bad_query_argument_is_invalid_input(
    client: httpx.AsyncClient, setup: Setup, name: str
) -> None:
    bad = BAD_QUERIES[name]
    body = await gql(client, bad.document, bad.variables, token=setup.user.token)

    assert body["data"] is None or all(value is None for value in body["data"].values()), body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT", body
    assert error["extensions"]["field"] == bad.field, body
    assert "Unexpected error" not in error["message"]


async def test_good_cursor_pages_on(client: httpx.AsyncClient, setup: Setup) -> None:
    """The counterpart of the bad cursors: the cursor the server issued does work."""
    await make_course(setup.user.id, "Second", subjects=0, topics=0)
    first = await gql(
        client,
        "query { courses(first: 1) { totalCount pageInfo { hasNextPage endCursor } nodes { id } } }",
        token=setup.user.token,
    )
    page = first["data"]["courses"]
    assert page["totalCount"] == 2 and page["pageInfo"]["hasNextPage"] is True
    second = await gql(
        client,
        COURSES_PAGE,
        {"first": 10, "after": page["pageInfo"]["endCursor"]},
        setup.user.token,
    )
    assert "errors" not in second, second
    assert len(second["data"]["courses"]["nodes"]) == 1
    assert second["data"]["courses"]["nodes"] != page["nodes"]


# --------------------------------------------------------------------------------------------
# Values outside an enum: rejected by GraphQL validation before any resolver runs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnumCase:
    document: str
    variables: Callable[[Setup], dict[str, Any]]
    bad_value: str  # the error must name it


CREATE_COURSE = (
    "mutation($input: CreateCourseInput!) { createCourse(input: $input) { __typename } }"
)

ENUM_CASES: dict[str, EnumCase] = {
    "createCourse-variable": EnumCase(
        CREATE_COURSE, lambda s: {"input": {"title": "Fine", "level": "EXPERT"}}, "EXPERT"
    ),
    "createCourse-value-not-name": EnumCase(
        CREATE_COURSE, lambda s: {"input": {"title": "Fine", "level": "beginner"}}, "beginner"
    ),
    "createCourse-literal": EnumCase(
        'mutation { createCourse(input: {title: "Fine", level: EXPERT}) { __typename } }',
        lambda s: {},
        "EXPERT",
    ),
    "updateCourse-variable": EnumCase(
        "mutation($id: ID!, $input: UpdateCourseInput!) {"
        " updateCourse(id: $id, input: $input, expectedVersion: 1) { __typename } }",
        lambda s: {"id": _c(s), "input": {"level": "EXPERT"}},
        "EXPERT",
    ),
    "shareCourse-role": EnumCase(
        "mutation($input: ShareCourseInput!) { shareCourse(input: $input) { __typename } }",
        lambda s: {"input": {"courseId": _c(s), "email": s.other.email, "role": "OWNER"}},
        "OWNER",
    ),
    "courses-filter-level": EnumCase(
        "query { courses(filter: {level: EXPERT}) { totalCount } }", lambda s: {}, "EXPERT"
    ),
}


@pytest.mark.parametrize("name", list(ENUM_CASES))
async def test_value_outside_enum_is_a_validation_error(
    client: httpx.AsyncClient, setup: Setup, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    case = ENUM_CASES[name]
    before = await snapshot()
    caplog.set_level(logging.ERROR, logger="coursegen.graphql")

    response = await client.post(
        "/graphql",
        json={"query": case.document, "variables": case.variables(setup)},
        headers={"authorization": f"Bearer {setup.user.token}"},
    )

    body = response.json()
    assert body.get("data") is None, body
    [error] = body["errors"]
    # The client is told what is wrong, not "Unexpected error", and no one is alerted.
    assert f"'{case.bad_value}'" in error["message"], body
    assert "does not exist" in error["message"], body
    assert not [r for r in caplog.records if r.name == "coursegen.graphql"], caplog.text
    assert await snapshot() == before


# --------------------------------------------------------------------------------------------
# C) unexpected errors: masked for the client, logged in full with the request id
# --------------------------------------------------------------------------------------------

SECRET = "secret SQL detail SELECT * FROM users"
LEAKS = (
    "Traceback",
    "SELECT",
    "RuntimeError",
    "secret",
    "services",
    "resolvers",
    "course_reads",
    ".py",
)


async def _explode(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(SECRET)


@pytest.mark.parametrize("incoming_id", [None, "req-from-proxy.42"])
@pytest.mark.parametrize("where", ["query", "mutation"])
async def test_unexpected_error_is_masked_and_logged_with_request_id(
    client: httpx.AsyncClient,
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    where: str,
    incoming_id: str | None,
) -> None:
    if where == "query":
        # resolvers/queries.py looks it up as `course_reads.count_courses` at call time.
        monkeypatch.setattr(course_reads, "count_courses", _explode)
        # The fast path (fastpath/) reads with its own reader: failing there, it hands the
        # request to the normal executor, which fails the same way and masks it.
        monkeypatch.setattr(tree_reads.Reader, "course_page", _explode)
        document = "query { courses { totalCount nodes { id title } } }"
        variables: dict[str, Any] = {}
    else:
        # resolvers/mutations.py looks it up as `courses.update_course` at call time.
        monkeypatch.setattr(courses, "update_course", _explode)
        document = (
            'mutation($id: ID!) { updateCourse(id: $id, input: {title: "New"},'
            " expectedVersion: 1) { __typename } }"
        )
        variables = {"id": _c(setup)}
    headers = {"authorization": f"Bearer {setup.user.token}"}
    if incoming_id:
        headers["x-request-id"] = incoming_id
    caplog.set_level(logging.ERROR, logger="coursegen.graphql")

    response = await client.post(
        "/graphql", json={"query": document, "variables": variables}, headers=headers
    )

    assert response.status_code == 200
    body = response.json()
    assert [error["message"] for error in body["errors"]] == [
        "Unexpected error. It has been logged; quote the request id to support."
    ], body
    text = response.text
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} leaked: {text}"
    request_id = response.headers.get("x-request-id")
    assert request_id, response.headers
    if incoming_id:
        assert request_id == incoming_id

    records = [r for r in caplog.records if r.name == "coursegen.graphql"]
    assert len(records) == 1, caplog.text
    [record] = records
    assert getattr(record, "request_id", None) == request_id
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert SECRET in str(record.exc_info[1])


async def test_client_errors_are_not_logged_as_unexpected(
    client: httpx.AsyncClient, setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="coursegen.graphql")
    body = await gql(client, COURSES_PAGE, {"first": -1}, token=setup.user.token)
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    assert not [r for r in caplog.records if r.name == "coursegen.graphql"]


# --------------------------------------------------------------------------------------------
# D) optimistic concurrency: stale versions are refused, nothing changes
# --------------------------------------------------------------------------------------------


async def _update_title(
    client: httpx.AsyncClient, s: Setup, title: str, version: int
) -> dict[str, Any]:
    variables = {"id": _c(s), "input": {"title": title}, "expectedVersion": version}
    result, _ = await mutate(client, "updateCourse", variables, s.user.token)
    return result


async def test_update_course_with_right_version_bumps_it(
    client: httpx.AsyncClient, setup: Setup
) -> None:
    assert (await Course.get(id=setup.tree.course_id)).version == 1
    result = await _update_title(client, setup, "Renamed", 1)
    assert result == {
        "__typename": "UpdateCourseSuccess",
        "course": {"id": _c(setup), "title": "Renamed", "version": 2},
    }
    stored = await Course.get(id=setup.tree.course_id)
    assert (stored.title, stored.version) == ("Renamed", 2)


@pytest.mark.parametrize("stale", [1, 0, 3, 99])
async def test_update_course_with_stale_version_conflicts(
    client: httpx.AsyncClient, setup: Setup, stale: int
) -> None:
    assert (await _update_title(client, setup, "Second", 1))["__typename"] == "UpdateCourseSuccess"
    before = await snapshot()

    result = await _update_title(client, setup, "Lost update", stale)

    assert result["__typename"] == "VersionConflictError", result
    assert result["code"] == "VERSION_CONFLICT"
    assert result["currentVersion"] == 2
    assert result["field"] == "expectedVersion"
    assert await snapshot() == before
    # With the version it was told, the retry goes through.
    retried = await _update_title(client, setup, "Lost update", result["currentVersion"])
    assert retried["course"] == {"id": _c(setup), "title": "Lost update", "version": 3}


async def test_save_note_with_stale_version_conflicts(
    client: httpx.AsyncClient, setup: Setup
) -> None:
    edit = {"noteId": setup.note_id, "body": "second words", "expectedVersion": 1}
    first, body = await mutate(client, "saveNote", {"input": edit}, setup.user.token)
    assert first["__typename"] == "SaveNoteSuccess", body
    assert first["note"]["version"] == 2
    before = await snapshot()

    stale = {**edit, "body": "overwritten"}
    result, body = await mutate(client, "saveNote", {"input": stale}, setup.user.token)

    assert result["__typename"] == "VersionConflictError", body
    assert result["code"] == "VERSION_CONFLICT"
    assert result["currentVersion"] == 2
    assert await snapshot() == before
    assert (await Note.get(id=setup.note_id)).body == "second words"
