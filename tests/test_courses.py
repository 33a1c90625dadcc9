"""Courses: keyset pages, filters, ordering, and the course-tree mutations."""

from __future__ import annotations

import uuid

import httpx
import pytest

from models import Course, CourseLevel, CourseStatus, Topic
from tests.support import gql, make_course, sign_up

PAGE = """
query Page($first: Int!, $after: String, $filter: CourseFilterInput, $orderBy: CourseOrder!) {
  courses(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id title } }
  }
}
"""


async def _walk(client: httpx.AsyncClient, token: str, order: str, size: int) -> list[str]:
    titles: list[str] = []
    after = None
    for _ in range(50):
        body = await gql(
            client, PAGE, {"first": size, "after": after, "orderBy": order}, token=token
        )
        page = body["data"]["courses"]
        titles += [edge["node"]["title"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return titles
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize(
    "order", ["CREATED_AT_DESC", "CREATED_AT_ASC", "UPDATED_AT_DESC", "TITLE_ASC"]
)
async def test_keyset_pages_visit_every_course_once_in_order(
    client: httpx.AsyncClient, order: str
) -> None:
    user = await sign_up(client)
    titles = [f"Course {i:02d}" for i in range(11)]
    for title in titles:
        await make_course(user.id, title=title, subjects=0)
    # Same title twice: ties are broken by id, so no course is skipped or repeated.
    await make_course(user.id, title="Course 05", subjects=0)
    seen = await _walk(client, user.token, order, size=3)
    assert sorted(seen) == sorted([*titles, "Course 05"])
    rows = await Course.all().values("title", "created_at", "updated_at", "id")
    column = {"CREATED_AT": "created_at", "UPDATED_AT": "updated_at", "TITLE": "title"}[
        order.rsplit("_", 1)[0]
    ]
    expected = sorted(rows, key=lambda r: (r[column], str(r["id"])), reverse=order.endswith("DESC"))
    assert seen == [r["title"] for r in expected]


async def test_filters_and_total_count(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    await make_course(user.id, title="SQL for analysts", subjects=0)
    await make_course(user.id, title="Linear algebra", subjects=0)
    await Course.filter(title="Linear algebra").update(
        level=CourseLevel.ADVANCED, status=CourseStatus.DRAFT
    )

    async def count(flt: dict[str, str]) -> int:
        body = await gql(
            client, PAGE, {"first": 10, "filter": flt, "orderBy": "TITLE_ASC"}, token=user.token
        )
        assert len(body["data"]["courses"]["edges"]) == body["data"]["courses"]["totalCount"]
        return int(body["data"]["courses"]["totalCount"])

    assert await count({}) == 2
    assert await count({"search": "sql"}) == 1
    assert await count({"level": "ADVANCED"}) == 1
    assert await count({"status": "READY"}) == 1
    assert await count({"status": "READY", "level": "ADVANCED"}) == 0


async def test_cursor_from_another_order_is_refused(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    for i in range(3):
        await make_course(user.id, title=f"C{i}", subjects=0)
    body = await gql(client, PAGE, {"first": 1, "orderBy": "TITLE_ASC"}, token=user.token)
    cursor = body["data"]["courses"]["pageInfo"]["endCursor"]
    body = await gql(
        client, PAGE, {"first": 1, "after": cursor, "orderBy": "CREATED_AT_DESC"}, token=user.token
    )
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


CREATE = """
mutation($input: CreateCourseInput!) {
  createCourse(input: $input) {
    __typename
    ... on CreateCourseSuccess { course { id title level language status version viewerAccess } }
    ... on UserError { code field }
  }
}
"""


async def test_create_course_with_client_made_id(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    course_id = str(uuid.uuid4())
    body = await gql(
        client,
        CREATE,
        {"input": {"id": course_id, "title": "Offline course", "level": "INTERMEDIATE"}},
        token=user.token,
    )
    course = body["data"]["createCourse"]["course"]
    assert course == {
        "id": course_id,
        "title": "Offline course",
        "level": "INTERMEDIATE",
        "language": "en",
        "status": "DRAFT",
        "version": 1,
        "viewerAccess": "OWNER",
    }


TREE = """
query($id: ID!) { course(id: $id) { version subjects { id position topics { id title position } } } }
"""
ADD_SUBJECT = """
mutation($input: AddSubjectInput!) {
  addSubject(input: $input) { __typename ... on AddSubjectSuccess { subject { id position } } }
}
"""
ADD_TOPIC = """
mutation($input: AddTopicInput!) {
  addTopic(input: $input) { __typename ... on AddTopicSuccess { topic { id position title } } }
}
"""
MOVE = """
mutation($input: MoveTopicInput!) {
  moveTopic(input: $input) {
    __typename
    ... on MoveTopicSuccess { topic { id subjectId position } }
    ... on UserError { code field }
  }
}
"""


async def _titles(client: httpx.AsyncClient, token: str, course_id: uuid.UUID) -> list[list[str]]:
    body = await gql(client, TREE, {"id": str(course_id)}, token=token)
    subjects = body["data"]["course"]["subjects"]
    for subject in subjects:
        assert [t["position"] for t in subject["topics"]] == list(range(len(subject["topics"])))
    return [[t["title"] for t in s["topics"]] for s in subjects]


async def test_subjects_topics_and_moves_keep_a_clean_order(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id, subjects=2, topics=3)
    s0, s1 = tree.subject_ids
    t = tree.topic_ids  # t[0..2] in s0, t[3..5] in s1
    assert await _titles(client, user.token, tree.course_id) == [
        ["Topic 0.0", "Topic 0.1", "Topic 0.2"],
        ["Topic 1.0", "Topic 1.1", "Topic 1.2"],
    ]
    body = await gql(
        client,
        ADD_TOPIC,
        {"input": {"subjectId": str(s0), "title": "Inserted", "afterTopicId": str(t[0])}},
        token=user.token,
    )
    assert body["data"]["addTopic"]["topic"]["position"] == 1
    # Move the last topic of s0 to the front of s0, then a topic of s1 into s0 after t[0].
    moves = [
        {"topicId": str(t[2]), "subjectId": str(s0), "beforeTopicId": str(t[0])},
        {"topicId": str(t[4]), "subjectId": str(s0), "afterTopicId": str(t[0])},
        {"topicId": str(t[3]), "subjectId": str(s1)},  # to the end of its own subject
    ]
    for move in moves:
        body = await gql(client, MOVE, {"input": move}, token=user.token)
        assert body["data"]["moveTopic"]["__typename"] == "MoveTopicSuccess", body
    assert await _titles(client, user.token, tree.course_id) == [
        ["Topic 0.2", "Topic 0.0", "Topic 1.1", "Inserted", "Topic 0.1"],
        ["Topic 1.2", "Topic 1.0"],
    ]
    ranks = await Topic.filter(course_id=tree.course_id).values_list("rank", flat=True)
    assert len(set(ranks)) == len(ranks)
    body = await gql(
        client,
        ADD_SUBJECT,
        {"input": {"courseId": str(tree.course_id), "title": "New"}},
        token=user.token,
    )
    assert body["data"]["addSubject"]["subject"]["position"] == 2
    # Every change bumped the course version: 1 + addTopic + 3 moves + addSubject.
    course = await Course.get(id=tree.course_id)
    assert course.version == 6


async def test_many_moves_into_the_same_gap_never_collide(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id, subjects=1, topics=3)
    first, middle, last = tree.topic_ids
    # Moving topics alternately between the same two neighbours halves the gap each time.
    for i in range(40):
        mover = middle if i % 2 == 0 else last
        anchor = first
        body = await gql(
            client,
            MOVE,
            {
                "input": {
                    "topicId": str(mover),
                    "subjectId": str(tree.subject_ids[0]),
                    "afterTopicId": str(anchor),
                }
            },
            token=user.token,
        )
        assert body["data"]["moveTopic"]["__typename"] == "MoveTopicSuccess"
    ranks = await Topic.filter(course_id=tree.course_id).values_list("rank", flat=True)
    assert len(set(ranks)) == 3
    # The last move put `last` right after `first`.
    assert await _titles(client, user.token, tree.course_id) == [
        ["Topic 0.0", "Topic 0.2", "Topic 0.1"]
    ]


async def test_move_to_a_subject_of_another_course_is_not_found(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    one = await make_course(user.id, subjects=1, topics=1)
    other = await make_course(user.id, subjects=1, topics=1)
    body = await gql(
        client,
        MOVE,
        {"input": {"topicId": str(one.topic_ids[0]), "subjectId": str(other.subject_ids[0])}},
        token=user.token,
    )
    assert body["data"]["moveTopic"] == {
        "__typename": "NotFoundError",
        "code": "NOT_FOUND",
        "field": "input.subjectId",
    }


async def test_deleted_course_disappears_but_is_kept_as_a_tombstone(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id)
    body = await gql(
        client,
        "mutation($id: ID!) { deleteCourse(id: $id) { __typename ... on DeleteCourseSuccess { deletedId } } }",
        {"id": str(tree.course_id)},
        token=user.token,
    )
    assert body["data"]["deleteCourse"]["deletedId"] == str(tree.course_id)
    body = await gql(client, TREE, {"id": str(tree.course_id)}, token=user.token)
    assert body["data"]["course"] is None
    body = await gql(client, "{ courses { totalCount } }", token=user.token)
    assert body["data"]["courses"]["totalCount"] == 0
    course = await Course.get(id=tree.course_id)
    assert course.deleted_at is not None and course.version == 2


CREATE_WITH_ID = """
mutation($id: ID!, $title: String!) {
  createCourse(input: {id: $id, title: $title}) {
    __typename
    ... on CreateCourseSuccess { course { id title } }
    ... on UserError { code field }
  }
}
"""


async def test_create_course_with_an_id_in_use(client: httpx.AsyncClient) -> None:
    # Found by the schemathesis run: a client-made id that is taken was a masked error.
    owner, other = await sign_up(client), await sign_up(client)
    theirs = await make_course(other.id, title="Theirs", subjects=0)
    body = await gql(
        client, CREATE_WITH_ID, {"id": str(theirs.course_id), "title": "Mine?"}, token=owner.token
    )
    assert body["data"]["createCourse"] == {
        "__typename": "InvalidInputError",
        "code": "INVALID_INPUT",
        "field": "input.id",
    }
    assert (await Course.get(id=theirs.course_id)).owner_id == other.id
    assert (await Course.get(id=theirs.course_id)).title == "Theirs"

    # The same creation sent again (a lost response): the course, once.
    mine = str(uuid.uuid4())
    for _ in range(2):
        body = await gql(client, CREATE_WITH_ID, {"id": mine, "title": "Once"}, token=owner.token)
        assert body["data"]["createCourse"]["course"] == {"id": mine, "title": "Once"}
    assert await Course.filter(owner_id=owner.id).count() == 1
