"""The fast path (fastpath/) answers exactly what the normal executor answers.

Each request is sent twice: with the fast path not serving (graphql-core's executor answers,
and teaches the fast path the document), then serving. The two responses must be equal
(status, data, errors, cost), the fast path must have served every error-free response of a
shape it supports, and the budgets must be charged once per request. Generated queries
(Hypothesis) cover aliases, merged fields, named and inline fragments, `@include`/`@skip`,
pagination with cursors of every order, filters, and ids of other users' courses.

The fast path reads PostgreSQL only; on SQLite it must stay out of the way.
"""

from __future__ import annotations

import hashlib
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from models import (
    Bookmark,
    Course,
    CourseLevel,
    CourseMember,
    CourseStatus,
    MemberRole,
    Note,
    Topic,
    TopicProgress,
)
from settings import Settings
from tests import support
from tests.support import count_statements, make_course, sign_up

pytestmark = pytest.mark.usefixtures("app")

DASHBOARD = (
    "query Dashboard { courses(first: 20) { totalCount pageInfo { hasNextPage endCursor } "
    "edges { cursor node { id title description level status version updatedAt "
    "subjects { id title position topics { id title position estimatedMinutes "
    "progress { completed } } } } } } }"
)
COURSE_PAGE = """
query CoursePage($id: ID!) {
  course(id: $id) {
    __typename id title description level language status version createdAt updatedAt
    viewerAccess owner { id displayName } members { role addedAt user { id displayName } }
    subjects {
      id courseId position title summary
      topics {
        id subjectId courseId position title objectives content estimatedMinutes bookmarked
        progress { completed completedAt score }
        notes { id topicId body version createdAt updatedAt }
      }
    }
  }
  me { id email displayName tier role }
}
"""


@dataclass
class World:
    owner: support.TestUser
    other: support.TestUser
    own_ids: list[str] = field(default_factory=list)
    shared_id: str = ""
    private_id: str = ""
    deleted_id: str = ""
    cursors: list[str] = field(default_factory=list)


async def build_world(client: httpx.AsyncClient) -> World:
    owner, other = await sign_up(client), await sign_up(client)
    world = World(owner=owner, other=other)
    trees = []
    for index, title in enumerate(["Algebra", "Biology", "Biology", "Chemistry"]):
        tree = await make_course(owner.id, title=title, subjects=1 + index % 3, topics=2 + index)
        trees.append(tree)
        world.own_ids.append(str(tree.course_id))
    await Course.filter(id=trees[1].course_id).update(
        level=CourseLevel.ADVANCED, status=CourseStatus.DRAFT, description="About life"
    )
    # Two courses created at the same instant: keyset pages must break the tie by id.
    same = datetime.now(UTC) - timedelta(days=1)
    await Course.filter(id__in=[trees[2].course_id, trees[3].course_id]).update(created_at=same)
    # Two topics at the same rank (two concurrent moves into one gap).
    first_subject_topics = await Topic.filter(subject_id=trees[3].subject_ids[0]).order_by("rank")
    await Topic.filter(id=first_subject_topics[1].id).update(rank=first_subject_topics[0].rank)
    await Topic.filter(id=first_subject_topics[0].id).update(objectives=["read", "write"])
    topic = trees[0].topic_ids[0]
    # Timestamps with and without microseconds (rendered by PostgreSQL on the fast path, and
    # by Python's isoformat() on the normal one).
    await TopicProgress.create(
        user_id=owner.id,
        topic_id=topic,
        completed=True,
        score=80,
        completed_at=datetime(2026, 3, 1, 8, 30, 5, 123456, tzinfo=UTC),
    )
    await TopicProgress.create(
        user_id=owner.id,
        topic_id=trees[0].topic_ids[1],
        completed=True,
        completed_at=datetime(2026, 3, 1, 8, 30, 5, tzinfo=UTC),
    )
    await TopicProgress.create(
        user_id=owner.id, topic_id=trees[1].topic_ids[0], completed=False, completed_at=None
    )
    await Bookmark.create(user_id=owner.id, topic_id=topic)
    await Note.create(user_id=owner.id, topic_id=topic, body="mine")
    note = await Note.create(user_id=owner.id, topic_id=topic, body='mine too: "quoted" \\ ünï')
    await Note.filter(id=note.id).update(created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    deleted = await make_course(owner.id, title="Gone")
    await Course.filter(id=deleted.course_id).update(deleted_at=datetime.now(UTC))
    world.deleted_id = str(deleted.course_id)

    shared = await make_course(other.id, title="Shared with owner", subjects=2, topics=2)
    await CourseMember.create(course_id=shared.course_id, user_id=owner.id, role=MemberRole.VIEWER)
    await CourseMember.create(
        course_id=trees[0].course_id, user_id=other.id, role=MemberRole.EDITOR
    )
    await Note.create(user_id=other.id, topic_id=shared.topic_ids[0], body="not the owner's")
    await TopicProgress.create(user_id=other.id, topic_id=topic, completed=True, score=10)
    world.shared_id = str(shared.course_id)
    world.private_id = str((await make_course(other.id, title="Private")).course_id)
    # Cursors of every order, for `after`.
    for order in ("CREATED_AT_DESC", "CREATED_AT_ASC", "UPDATED_AT_DESC", "TITLE_ASC"):
        body = (
            await client.post(
                "/graphql",
                json={
                    "query": "query($o: CourseOrder) { courses(first: 2, orderBy: $o) "
                    "{ edges { cursor } } }",
                    "variables": {"o": order},
                },
                headers={"authorization": f"Bearer {owner.token}"},
            )
        ).json()
        world.cursors += [e["cursor"] for e in body["data"]["courses"]["edges"]]
    return world


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


async def ask(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str | None
) -> Answer:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    return Answer(response.status_code, response.json())


async def both(
    app: Starlette, client: httpx.AsyncClient, query: str, variables: dict[str, Any], token: Any
) -> tuple[Answer, Answer, bool]:
    """The normal executor's answer, the fast path's answer, and whether it served it."""
    fast_path = app.state.fast_path
    fast_path.serving = False
    try:
        normal = await ask(client, query, variables, token)
    finally:
        fast_path.serving = True
    served = fast_path.stats["served"]
    fast = await ask(client, query, variables, token)
    return normal, fast, fast_path.stats["served"] > served


def without_remaining(body: dict[str, Any]) -> dict[str, Any]:
    copy = dict(body)
    cost = dict(copy.get("extensions", {}).get("cost", {}))
    cost.pop("remaining", None)
    if cost:
        copy["extensions"] = {**copy["extensions"], "cost": cost}
    return copy


def assert_same(normal: Answer, fast: Answer, *, charged_once: bool = False) -> None:
    assert fast.status == normal.status
    assert without_remaining(fast.body) == without_remaining(normal.body)
    cost_n = normal.body.get("extensions", {}).get("cost")
    cost_f = fast.body.get("extensions", {}).get("cost")
    # Only for a user whose every charge is younger than the budget's sliding window (a fresh
    # one): older charges leaving the window between the two requests would add to `remaining`.
    if charged_once and cost_n and cost_f and "errors" not in normal.body:
        # Charged once each: the second request's remaining is the first's minus its cost.
        assert cost_f["remaining"] == cost_n["remaining"] - max(cost_n["requested"], 1)


# -- fixed shapes -----------------------------------------------------------------------------


@pytest.fixture
def report_cost(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "report_query_cost", True)
    # Windows longer than any test: on a loaded machine the world's own requests could leave a
    # one-minute window between two compared requests and add to `remaining`.
    monkeypatch.setattr(settings, "cost_rate_user", "3000000/hour")
    monkeypatch.setattr(settings, "cost_rate_ip", "6000000/hour")


@pytest.mark.usefixtures("report_cost")
async def test_dashboard_and_course_page_equal_and_served(
    app: Starlette, client: httpx.AsyncClient, settings: Settings
) -> None:
    world = await build_world(client)
    cases = [
        (DASHBOARD, {}),
        (COURSE_PAGE, {"id": world.own_ids[0]}),
        (COURSE_PAGE, {"id": world.own_ids[3]}),
        (COURSE_PAGE, {"id": world.shared_id}),
        (COURSE_PAGE, {"id": world.private_id}),
        (COURSE_PAGE, {"id": world.deleted_id}),
    ]
    for query, variables in cases:
        normal, fast, served = await both(app, client, query, variables, world.owner.token)
        assert "errors" not in normal.body, normal.body
        assert_same(normal, fast, charged_once=True)
        assert served == (not settings.uses_sqlite), (query, variables)
    # What was checked holds data: the shared course shows the viewer's access and no notes
    # of its owner; the private and the deleted one are null.
    normal, _, _ = await both(app, client, COURSE_PAGE, {"id": world.shared_id}, world.owner.token)
    course = normal.body["data"]["course"]
    assert course["viewerAccess"] == "VIEWER"
    assert all(t["notes"] == [] for s in course["subjects"] for t in s["topics"])
    for hidden in (world.private_id, world.deleted_id):
        normal, _, _ = await both(app, client, COURSE_PAGE, {"id": hidden}, world.owner.token)
        assert normal.body["data"]["course"] is None


async def test_errors_and_refusals_are_the_normal_executors(
    app: Starlette, client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await build_world(client)
    page = "query($first: Int, $after: String) { courses(first: $first, after: $after) { totalCount } }"
    cases: list[tuple[str, dict[str, Any], Any]] = [
        (DASHBOARD, {}, None),  # no token
        (DASHBOARD, {}, "not-a-token"),
        (DASHBOARD, {}, world.owner.token[:-3] + "abc"),  # bad signature
        (page, {"first": 101}, world.owner.token),
        (page, {"first": -1}, world.owner.token),
        (page, {"first": "ten"}, world.owner.token),
        (page, {"after": "garbage"}, world.owner.token),
        (page, {"after": world.cursors[2]}, world.owner.token),  # a cursor of another order
        (COURSE_PAGE, {"id": "not-a-uuid"}, world.owner.token),
        (COURSE_PAGE, {}, world.owner.token),
    ]
    for query, variables, token in cases:
        normal, fast, served = await both(app, client, query, variables, token)
        assert normal.body.get("errors"), (query, variables)
        assert_same(normal, fast)
        assert not served
    # A spent budget: the fast path charges, and hands the refusal to the normal executor,
    # which reports it in its words without charging again. The dashboard costs the same for
    # every user (a static price), so a budget of two and a half dashboards lets two through.
    monkeypatch.setattr(settings, "report_query_cost", True)
    first = await ask(client, DASHBOARD, {}, (await sign_up(client)).token)
    price = first.body["extensions"]["cost"]["requested"]
    monkeypatch.setattr(settings, "cost_rate_user", f"{price * 5 // 2}/minute")
    fast_path = app.state.fast_path
    statuses: dict[bool, list[int]] = {}
    refusals: dict[bool, Any] = {}
    for serving in (True, False):
        user = await sign_up(client)
        fast_path.serving = serving
        try:
            answers = [await ask(client, DASHBOARD, {}, user.token) for _ in range(3)]
        finally:
            fast_path.serving = True
        statuses[serving] = [answer.status for answer in answers]
        refusals[serving] = answers[2].body["errors"][0]["extensions"]["code"]
    assert statuses == {True: [200, 200, 429], False: [200, 200, 429]}
    assert refusals == {True: "RATE_LIMITED", False: "RATE_LIMITED"}


async def test_statements_stay_few_and_constant(
    app: Starlette, client: httpx.AsyncClient, settings: Settings
) -> None:
    if settings.uses_sqlite:
        pytest.skip("the fast path reads PostgreSQL only")
    user = await sign_up(client)
    counts = []
    for courses in (1, 30):
        await Course.filter(owner_id=user.id).delete()
        for index in range(courses):
            await make_course(user.id, title=f"Course {index}", subjects=3, topics=2)
        await both(app, client, DASHBOARD, {}, user.token)
        served = app.state.fast_path.stats["served"]
        with count_statements() as statements:
            answer = await ask(client, DASHBOARD, {}, user.token)
        assert app.state.fast_path.stats["served"] == served + 1
        assert answer.body["data"]["courses"]["totalCount"] == courses
        counts.append(len(statements))
    # auth session + page with its count + subjects + topics with the viewer's progress
    assert counts == [4, 4]


async def test_persisted_query_hashes_take_the_fast_path(
    app: Starlette, client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await sign_up(client)
    await make_course(user.id)
    headers = {"authorization": f"Bearer {user.token}"}
    # A document of its own: a Redis store keeps registered hashes across test runs.
    query = DASHBOARD.replace("query Dashboard", f"query Dashboard{uuid.uuid4().hex}")
    persisted = {
        "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(query.encode()).hexdigest()}
    }
    fast_path = app.state.fast_path

    async def post(payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        served = fast_path.stats["served"]
        response = await client.post("/graphql", json=payload, headers=headers)
        return response.json(), fast_path.stats["served"] > served

    # An unknown hash is the normal executor's PersistedQueryNotFound.
    missing, served = await post({"extensions": persisted})
    assert missing["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert not served
    registered, _ = await post({"query": query, "extensions": persisted})
    assert registered["data"]["courses"]["totalCount"] == 1
    by_hash, served = await post({"extensions": persisted})
    assert by_hash == registered
    assert served == (not settings.uses_sqlite)


async def test_sqlite_takes_the_normal_path(
    app: Starlette, client: httpx.AsyncClient, settings: Settings
) -> None:
    if not settings.uses_sqlite:
        pytest.skip("checks the SQLite run")
    user = await sign_up(client)
    await make_course(user.id)
    served = app.state.fast_path.stats["served"]
    for _ in range(3):
        answer = await ask(client, DASHBOARD, {}, user.token)
        assert answer.body["data"]["courses"]["totalCount"] == 1
    assert app.state.fast_path.stats["served"] == served


# -- generated queries ------------------------------------------------------------------------

LEAVES = {
    "Course": [
        "id",
        "title",
        "description",
        "level",
        "language",
        "status",
        "version",
        "createdAt",
        "updatedAt",
        "viewerAccess",
        "__typename",
    ],
    "Subject": ["id", "courseId", "position", "title", "summary", "__typename"],
    "Topic": [
        "id",
        "subjectId",
        "courseId",
        "position",
        "title",
        "objectives",
        "estimatedMinutes",
        "bookmarked",
        "__typename",
    ],
    "Progress": ["completed", "completedAt", "score"],
    "Note": ["id", "topicId", "body", "version", "createdAt", "updatedAt"],
    "Member": ["role", "addedAt"],
    "User": ["id", "displayName"],
    "PageInfo": ["hasNextPage", "endCursor"],
    "CourseEdge": ["cursor"],
    "CourseConnection": ["totalCount", "__typename"],
}
OBJECTS = {
    "Course": [("subjects", "Subject"), ("owner", "User"), ("members", "Member")],
    "Subject": [("topics", "Topic")],
    "Topic": [("progress", "Progress"), ("notes", "Note")],
    "Member": [("user", "User")],
    "CourseEdge": [("node", "Course")],
    "CourseConnection": [("pageInfo", "PageInfo"), ("edges", "CourseEdge"), ("nodes", "Course")],
}
# "{name}2" aliases a field under a second key (and merges with a twin); "a" now and then
# names two different fields alike, which makes the document invalid (also compared).
ALIASES = ["", "", "", "{name}2: ", "{name}2: ", "a: "]
DIRECTIVES = ["", "", "", " @include(if: $yes)", " @skip(if: $yes)", " @include(if: $no)"]


Fragments = dict[str, str]  # name -> definition


@st.composite
def selection(draw: st.DrawFn, type_name: str, depth: int) -> tuple[str, Fragments]:
    """A selection set body on `type_name` and the named fragments it spreads."""
    fragments: Fragments = {}
    parts: list[str] = []
    leaves = draw(st.lists(st.sampled_from(LEAVES[type_name]), min_size=1, max_size=4))
    for leaf in leaves:
        alias = draw(st.sampled_from(ALIASES)).format(name=leaf.strip("_"))
        parts.append(f"{alias}{leaf}{draw(st.sampled_from(DIRECTIVES))}")
    if depth > 0:
        for name, child in OBJECTS.get(type_name, []):
            if draw(st.booleans()):
                inner, more = draw(selection(child, depth - 1))
                fragments.update(more)
                alias = draw(st.sampled_from(ALIASES)).format(name=name)
                directive = draw(st.sampled_from(DIRECTIVES))
                parts.append(f"{alias}{name}{directive} {{ {inner} }}")
    wrap = draw(st.sampled_from(["plain", "plain", "inline", "typed", "spread"]))
    body = " ".join(draw(st.permutations(parts)))
    directive = draw(st.sampled_from(DIRECTIVES))
    if wrap == "inline":
        return f"...{directive} {{ {body} }} {parts[0]}", fragments
    if wrap == "typed":
        return f"... on {type_name}{directive} {{ {body} }}", fragments
    if wrap == "spread":
        name = f"F{type_name}{zlib.crc32(body.encode())}"
        fragments[name] = f"fragment {name} on {type_name} {{ {body} }}"
        return f"...{name}{directive} {parts[0]}", fragments
    return body, fragments


VARIABLES = {
    "yes": "Boolean!",
    "no": "Boolean!",
    "first": "Int",
    "after": "String",
    "order": "CourseOrder",
    "filter": "CourseFilterInput",
    "id": "ID!",
}


def document(roots: list[str], fragments: Fragments) -> str:
    """The operation, declaring the variables it uses (an unused one is a validation error)."""
    body = " ".join(roots) + " }" + "".join("\n" + d for d in fragments.values())
    used = [f"${name}: {kind}" for name, kind in VARIABLES.items() if f"${name}" in body]
    return f"query Q{'(' + ', '.join(used) + ')' if used else ''} {{ {body}"


@st.composite
def request(draw: st.DrawFn) -> tuple[str, dict[str, Any], str]:
    roots = []
    fragments: Fragments = {}
    if draw(st.booleans()):
        inner, more = draw(selection("CourseConnection", 4))
        fragments.update(more)
        args = draw(
            st.sampled_from(
                [
                    "",
                    "(first: $first)",
                    "(first: $first, after: $after)",
                    "(first: $first, after: $after, orderBy: $order)",
                    "(orderBy: $order, filter: $filter)",
                    "(first: 2, orderBy: TITLE_ASC)",
                ]
            )
        )
        alias = draw(st.sampled_from(ALIASES)).format(name="courses")
        roots.append(f"{alias}courses{args} {{ {inner} }}")
    if draw(st.booleans()) or not roots:
        inner, more = draw(selection("Course", 3))
        fragments.update(more)
        alias = draw(st.sampled_from(ALIASES)).format(name="course")
        roots.append(f"{alias}course(id: $id) {{ {inner} }}")
    if draw(st.booleans()):
        roots.append("me { id displayName tier }")
    variables = {
        "yes": True,
        "no": False,
        "first": draw(st.sampled_from([None, 0, 1, 2, 3, 20, 100, 101, -1])),
        "order": draw(
            st.sampled_from(
                [None, "CREATED_AT_DESC", "CREATED_AT_ASC", "UPDATED_AT_DESC", "TITLE_ASC"]
            )
        ),
        "filter": draw(
            st.sampled_from(
                [
                    None,
                    {"status": "READY"},
                    {"level": "ADVANCED"},
                    {"status": "GENERATING"},
                    {"search": "Bio"},
                    {"status": "READY", "level": "BEGINNER"},
                ]
            )
        ),
    }
    return (
        document(roots, fragments),
        variables,
        draw(st.sampled_from(["cursor", "none", "garbage"])),
    )


IDS = ["own0", "own1", "own3", "shared", "private", "deleted", "random", "malformed"]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(req=request(), which_id=st.sampled_from(IDS), cursor_index=st.integers(0, 7))
async def test_generated_queries_answer_the_same(
    app: Starlette,
    client: httpx.AsyncClient,
    settings: Settings,
    report_cost: None,
    req: tuple[str, dict[str, Any], str],
    which_id: str,
    cursor_index: int,
) -> None:
    world = _worlds.get(id(app))
    if world is None or not await Course.filter(id=uuid.UUID(world.own_ids[0])).exists():
        world = _worlds[id(app)] = await build_world(client)
    query, variables, after = req
    note(f"query: {query}")
    ids = {
        "own0": world.own_ids[0],
        "own1": world.own_ids[1],
        "own3": world.own_ids[3],
        "shared": world.shared_id,
        "private": world.private_id,
        "deleted": world.deleted_id,
        "random": str(uuid.uuid4()),
        "malformed": "42",
    }
    variables = dict(variables, id=ids[which_id])
    variables["after"] = {
        "cursor": world.cursors[cursor_index % len(world.cursors)],
        "none": None,
        "garbage": "garbage",
    }[after]
    normal, fast, served = await both(app, client, query, variables, world.owner.token)
    note(f"variables: {variables}")
    note(f"normal: {normal.body}")
    note(f"fast: {fast.body}")
    assert_same(normal, fast)
    supported = (
        not settings.uses_sqlite
        and "errors" not in normal.body
        and not ("$filter" in query and (variables["filter"] or {}).get("search"))
    )
    assert served == supported, (query, variables, normal.body)
    event("fast path served" if served else "normal executor answered")


_worlds: dict[int, World] = {}
