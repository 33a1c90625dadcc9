"""Authorization everywhere: a user sees and changes only its own courses and those shared with it.

A stranger trying another user's ids gets NOT_FOUND (existence is never disclosed) and changes
nothing; a member lacking a right gets FORBIDDEN; without a token everything is UNAUTHENTICATED.
Every refused attempt is checked against a snapshot of the whole course and learning state.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tortoise.models import Model

from models import Bookmark, Course, CourseMember, MemberRole, Note, Subject, Topic, TopicProgress
from tests.support import TestUser as Account
from tests.support import Tree, gql, make_course, sign_up

VICTIM_TITLE = "Victim's confidential course 7f3a9c"
STRANGER_TITLE = "The stranger's own course"

# --------------------------------------------------------------------------------------------
# Database snapshots
# --------------------------------------------------------------------------------------------

SNAPSHOT_MODELS: tuple[type[Model], ...] = (
    Course,
    CourseMember,
    Subject,
    Topic,
    TopicProgress,
    Note,
    Bookmark,
)

Snapshot = dict[str, list[dict[str, Any]]]


async def snapshot() -> Snapshot:
    """Every row of the course aggregate and the learning state, in a stable order."""
    state: Snapshot = {}
    for model in SNAPSHOT_MODELS:
        rows = await model.all().values()
        state[model.__name__] = sorted(rows, key=lambda row: str(row["id"]))
    return state


# --------------------------------------------------------------------------------------------
# GraphQL documents
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One mutation field: its variable definitions, arguments and success selection."""

    params: str
    args: str
    success: str
    # Whether the result union has VersionConflictError.
    versioned: bool = False

    def document(self, field: str) -> str:
        conflict = "... on VersionConflictError { currentVersion }" if self.versioned else ""
        return f"""
mutation Run({self.params}) {{
  {field}({self.args}) {{
    __typename
    ... on UserError {{ code message field }}
    {conflict}
    ... on {self.success}
  }}
}}
"""


def _input_op(input_type: str, success: str) -> Op:
    return Op(params=f"$input: {input_type}!", args="input: $input", success=success)


TOPIC_STATE = "topic { id subjectId position title progress { completed score } bookmarked }"

MUTATIONS: dict[str, Op] = {
    "createCourse": _input_op("CreateCourseInput", "CreateCourseSuccess { course { id title } }"),
    "updateCourse": Op(
        params="$id: ID!, $input: UpdateCourseInput!, $expectedVersion: Int!",
        args="id: $id, input: $input, expectedVersion: $expectedVersion",
        success="UpdateCourseSuccess { course { id title version } }",
        versioned=True,
    ),
    "deleteCourse": Op(
        params="$id: ID!", args="id: $id", success="DeleteCourseSuccess { deletedId }"
    ),
    "addSubject": _input_op("AddSubjectInput", "AddSubjectSuccess { subject { id title } }"),
    "addTopic": _input_op("AddTopicInput", f"AddTopicSuccess {{ {TOPIC_STATE} }}"),
    "updateTopic": _input_op("UpdateTopicInput", f"UpdateTopicSuccess {{ {TOPIC_STATE} }}"),
    "moveTopic": _input_op("MoveTopicInput", f"MoveTopicSuccess {{ {TOPIC_STATE} }}"),
    "shareCourse": _input_op(
        "ShareCourseInput", "ShareCourseSuccess { member { role user { id displayName } } }"
    ),
    "unshareCourse": _input_op("UnshareCourseInput", "UnshareCourseSuccess { courseId userId }"),
    "completeTopic": _input_op("CompleteTopicInput", f"CompleteTopicSuccess {{ {TOPIC_STATE} }}"),
    "uncompleteTopic": _input_op(
        "UncompleteTopicInput", f"UncompleteTopicSuccess {{ {TOPIC_STATE} }}"
    ),
    "bookmarkTopic": _input_op("BookmarkTopicInput", f"BookmarkTopicSuccess {{ {TOPIC_STATE} }}"),
    "unbookmarkTopic": _input_op(
        "UnbookmarkTopicInput", f"UnbookmarkTopicSuccess {{ {TOPIC_STATE} }}"
    ),
    "saveNote": Op(
        params="$input: SaveNoteInput!",
        args="input: $input",
        success="SaveNoteSuccess { note { id topicId body version } }",
        versioned=True,
    ),
    "deleteNote": Op(params="$id: ID!", args="id: $id", success="DeleteNoteSuccess { deletedId }"),
    "logOut": Op(params="", args="", success="LogOutSuccess { ok }"),
}


def _document(field: str) -> str:
    document = MUTATIONS[field].document(field)
    # A mutation without arguments has neither variable definitions nor an argument list.
    return document.replace("Run()", "Run").replace(f"{field}()", field)


async def mutate(
    client: httpx.AsyncClient, field: str, variables: dict[str, Any], token: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one mutation; returns (its result object, the whole response body)."""
    body = await gql(client, _document(field), variables, token=token)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"][field]
    return result, body


COURSE_QUERY = """
query One($id: ID!) {
  course(id: $id) {
    id title version viewerAccess
    owner { id }
    members { role user { id } }
    subjects { id title topics { id title progress { completed score } bookmarked
      notes { id body } } }
  }
}
"""

COURSES_QUERY = """
query Mine($filter: CourseFilterInput) {
  courses(first: 100, filter: $filter) {
    totalCount
    nodes { id title viewerAccess }
    edges { cursor node { id title } }
  }
}
"""


async def course_of(client: httpx.AsyncClient, course_id: uuid.UUID, token: str) -> Any:
    body = await gql(client, COURSE_QUERY, {"id": str(course_id)}, token=token)
    assert "errors" not in body, body
    return body["data"]["course"]


async def courses_of(
    client: httpx.AsyncClient, token: str, flt: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = await gql(client, COURSES_QUERY, {"filter": flt}, token=token)
    assert "errors" not in body, body
    connection: dict[str, Any] = body["data"]["courses"]
    return connection


def _topic(course: dict[str, Any], topic_id: uuid.UUID) -> dict[str, Any]:
    for subject in course["subjects"]:
        for topic in subject["topics"]:
            if topic["id"] == str(topic_id):
                return dict(topic)
    raise AssertionError(f"topic {topic_id} not in the course")


# --------------------------------------------------------------------------------------------
# The world: an owner with a course (shared with a friend) and learning state, and a stranger
# --------------------------------------------------------------------------------------------


@dataclass
class World:
    owner: Account
    friend: Account  # a VIEWER member of the owner's course
    stranger: Account
    course: Tree  # the owner's
    own: Tree  # the stranger's
    note_id: str  # the owner's note on course.topic_ids[0]


async def _owner_learning_state(client: httpx.AsyncClient, user: Account, tree: Tree) -> str:
    topic = str(tree.topic_ids[0])
    done, _ = await mutate(
        client, "completeTopic", {"input": {"topicId": topic, "score": 90}}, user.token
    )
    assert done["__typename"] == "CompleteTopicSuccess", done
    marked, _ = await mutate(client, "bookmarkTopic", {"input": {"topicId": topic}}, user.token)
    assert marked["__typename"] == "BookmarkTopicSuccess", marked
    note, _ = await mutate(
        client, "saveNote", {"input": {"topicId": topic, "body": "owner's note"}}, user.token
    )
    assert note["__typename"] == "SaveNoteSuccess", note
    return str(note["note"]["id"])


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    owner = await sign_up(client)
    friend = await sign_up(client)
    stranger = await sign_up(client)
    course = await make_course(owner.id, VICTIM_TITLE, subjects=2, topics=3)
    own = await make_course(stranger.id, STRANGER_TITLE, subjects=1, topics=2)
    await CourseMember.create(course_id=course.course_id, user_id=friend.id, role=MemberRole.VIEWER)
    note_id = await _owner_learning_state(client, owner, course)
    return World(owner, friend, stranger, course, own, note_id)


Vars = Callable[[World], dict[str, Any]]


@dataclass(frozen=True)
class Attempt:
    """A mutation by the stranger on the owner's things."""

    field: str
    variables: Vars
    # Whether the same call with unknown ids in place of the owner's must answer identically.
    same_as_unknown_ids: bool = True


def _c(w: World) -> str:
    return str(w.course.course_id)


def _s(w: World, index: int = 0) -> str:
    return str(w.course.subject_ids[index])


def _t(w: World, index: int = 0) -> str:
    return str(w.course.topic_ids[index])


STRANGER_ATTEMPTS: dict[str, Attempt] = {
    "updateCourse": Attempt(
        "updateCourse",
        lambda w: {"id": _c(w), "input": {"title": "Hijacked"}, "expectedVersion": 1},
    ),
    "deleteCourse": Attempt("deleteCourse", lambda w: {"id": _c(w)}),
    "addSubject": Attempt(
        "addSubject", lambda w: {"input": {"courseId": _c(w), "title": "Injected"}}
    ),
    "addTopic": Attempt("addTopic", lambda w: {"input": {"subjectId": _s(w), "title": "Injected"}}),
    "updateTopic": Attempt(
        "updateTopic",
        lambda w: {"input": {"topicId": _t(w), "title": "Hijacked", "estimatedMinutes": 99}},
    ),
    "moveTopic": Attempt(
        "moveTopic", lambda w: {"input": {"topicId": _t(w), "subjectId": _s(w, 1)}}
    ),
    "moveTopic-after-sibling": Attempt(
        "moveTopic",
        lambda w: {"input": {"topicId": _t(w, 2), "subjectId": _s(w), "afterTopicId": _t(w)}},
    ),
    "moveTopic-own-topic-into-victim-subject": Attempt(
        "moveTopic",
        lambda w: {"input": {"topicId": str(w.own.topic_ids[0]), "subjectId": _s(w)}},
    ),
    "shareCourse-with-self": Attempt(
        "shareCourse",
        lambda w: {"input": {"courseId": _c(w), "email": w.stranger.email, "role": "EDITOR"}},
    ),
    "unshareCourse-member": Attempt(
        "unshareCourse", lambda w: {"input": {"courseId": _c(w), "userId": str(w.friend.id)}}
    ),
    "unshareCourse-self": Attempt(
        "unshareCourse", lambda w: {"input": {"courseId": _c(w), "userId": str(w.stranger.id)}}
    ),
    "completeTopic": Attempt("completeTopic", lambda w: {"input": {"topicId": _t(w), "score": 5}}),
    "uncompleteTopic": Attempt("uncompleteTopic", lambda w: {"input": {"topicId": _t(w)}}),
    "bookmarkTopic": Attempt("bookmarkTopic", lambda w: {"input": {"topicId": _t(w)}}),
    "unbookmarkTopic": Attempt("unbookmarkTopic", lambda w: {"input": {"topicId": _t(w)}}),
    "saveNote-create-on-victim-topic": Attempt(
        "saveNote", lambda w: {"input": {"topicId": _t(w), "body": "spam"}}
    ),
    # saveNote upserts by a client-made note id: an unknown id is a note to create (and needs a
    # topicId), so these answers differ from the unknown-id ones by design. A note id is a
    # random UUID only its author knows, so that tells nothing about the owner's courses.
    "saveNote-edit-victim-note": Attempt(
        "saveNote",
        lambda w: {"input": {"noteId": w.note_id, "body": "defaced"}},
        same_as_unknown_ids=False,
    ),
    "saveNote-edit-victim-note-with-version": Attempt(
        "saveNote",
        lambda w: {"input": {"noteId": w.note_id, "body": "defaced", "expectedVersion": 1}},
        same_as_unknown_ids=False,
    ),
    "saveNote-victim-note-id-on-own-topic": Attempt(
        "saveNote",
        lambda w: {
            "input": {"noteId": w.note_id, "topicId": str(w.own.topic_ids[0]), "body": "mine"}
        },
        same_as_unknown_ids=False,
    ),
    "deleteNote": Attempt("deleteNote", lambda w: {"id": w.note_id}),
}


def _victim_ids(w: World) -> set[str]:
    return {
        _c(w),
        w.note_id,
        *(str(i) for i in w.course.subject_ids),
        *(str(i) for i in w.course.topic_ids),
    }


def _with_unknown_ids(value: Any, victim_ids: set[str], fresh: dict[str, str]) -> Any:
    """The same variables with every id of the owner's replaced by an id that exists nowhere."""
    if isinstance(value, dict):
        return {k: _with_unknown_ids(v, victim_ids, fresh) for k, v in value.items()}
    if isinstance(value, str) and value in victim_ids:
        return fresh.setdefault(value, str(uuid.uuid4()))
    return value


# --------------------------------------------------------------------------------------------
# A) strangers: nothing leaks, nothing changes
# --------------------------------------------------------------------------------------------


async def test_world_is_visible_to_its_owner(client: httpx.AsyncClient, world: World) -> None:
    """The baseline the stranger tests rely on: the owner does see all of it."""
    course = await course_of(client, world.course.course_id, world.owner.token)
    assert course["title"] == VICTIM_TITLE
    assert course["viewerAccess"] == "OWNER"
    topic = _topic(course, world.course.topic_ids[0])
    assert topic["progress"] == {"completed": True, "score": 90}
    assert topic["bookmarked"] is True
    assert [note["id"] for note in topic["notes"]] == [world.note_id]
    mine = await courses_of(client, world.owner.token)
    assert mine["totalCount"] == 1
    assert [node["title"] for node in mine["nodes"]] == [VICTIM_TITLE]


async def test_stranger_course_query_returns_null(client: httpx.AsyncClient, world: World) -> None:
    body = await gql(client, COURSE_QUERY, {"id": _c(world)}, token=world.stranger.token)
    assert body == {"data": {"course": None}}
    own = await course_of(client, world.own.course_id, world.stranger.token)
    assert own["title"] == STRANGER_TITLE


@pytest.mark.parametrize(
    "flt", [None, {"search": "confidential"}, {"status": "READY"}, {"level": "BEGINNER"}]
)
async def test_stranger_courses_excludes_others(
    client: httpx.AsyncClient, world: World, flt: dict[str, Any] | None
) -> None:
    body = await gql(client, COURSES_QUERY, {"filter": flt}, token=world.stranger.token)
    assert "errors" not in body, body
    assert VICTIM_TITLE not in json.dumps(body)
    connection = body["data"]["courses"]
    expected = [] if flt and "search" in flt else [str(world.own.course_id)]
    assert [node["id"] for node in connection["nodes"]] == expected
    assert [edge["node"]["id"] for edge in connection["edges"]] == expected
    assert connection["totalCount"] == len(expected)


@pytest.mark.parametrize("name", list(STRANGER_ATTEMPTS))
async def test_stranger_mutation_is_not_found_and_changes_nothing(
    client: httpx.AsyncClient, world: World, name: str
) -> None:
    attempt = STRANGER_ATTEMPTS[name]
    variables = attempt.variables(world)
    before = await snapshot()

    result, body = await mutate(client, attempt.field, variables, world.stranger.token)

    assert result["__typename"] == "NotFoundError", body
    assert result["code"] == "NOT_FOUND"
    assert result["field"], body
    assert VICTIM_TITLE not in json.dumps(body)
    assert await snapshot() == before

    if attempt.same_as_unknown_ids:
        unknown = _with_unknown_ids(variables, _victim_ids(world), {})
        assert unknown != variables
        answer, _ = await mutate(client, attempt.field, unknown, world.stranger.token)
        assert answer == result, "the answer must not tell an existing id from an unknown one"
        assert await snapshot() == before


async def test_stranger_sees_none_of_the_owners_learning_state(
    client: httpx.AsyncClient, world: World
) -> None:
    """Even on its own course, the stranger's topics carry only its own (empty) state."""
    own = await course_of(client, world.own.course_id, world.stranger.token)
    for subject in own["subjects"]:
        for topic in subject["topics"]:
            assert topic["progress"] is None
            assert topic["bookmarked"] is False
            assert topic["notes"] == []


# --------------------------------------------------------------------------------------------
# Sharing: viewers read, editors edit, only owners delete and share
# --------------------------------------------------------------------------------------------


async def share(
    client: httpx.AsyncClient, owner: Account, course_id: uuid.UUID, member: Account, role: str
) -> None:
    variables = {"input": {"courseId": str(course_id), "email": member.email, "role": role}}
    result, body = await mutate(client, "shareCourse", variables, owner.token)
    assert result["__typename"] == "ShareCourseSuccess", body
    assert result["member"]["role"] == role
    assert result["member"]["user"]["id"] == str(member.id)


async def _version(course_id: uuid.UUID) -> int:
    course = await Course.get(id=course_id)
    return course.version


EDITS: dict[str, Attempt] = {
    "updateCourse": Attempt(
        "updateCourse",
        lambda w: {"id": _c(w), "input": {"title": "Edited by a member"}, "expectedVersion": -1},
    ),
    "addSubject": Attempt(
        "addSubject", lambda w: {"input": {"courseId": _c(w), "title": "A member's subject"}}
    ),
    "addTopic": Attempt(
        "addTopic", lambda w: {"input": {"subjectId": _s(w), "title": "A member's topic"}}
    ),
    "updateTopic": Attempt(
        "updateTopic", lambda w: {"input": {"topicId": _t(w), "title": "Retitled by a member"}}
    ),
    "moveTopic": Attempt(
        "moveTopic", lambda w: {"input": {"topicId": _t(w), "subjectId": _s(w, 1)}}
    ),
}

OWNER_ONLY: dict[str, Attempt] = {
    "deleteCourse": Attempt("deleteCourse", lambda w: {"id": _c(w)}),
    "shareCourse": Attempt(
        "shareCourse",
        lambda w: {"input": {"courseId": _c(w), "email": w.stranger.email, "role": "VIEWER"}},
    ),
    "unshareCourse-other-member": Attempt(
        "unshareCourse", lambda w: {"input": {"courseId": _c(w), "userId": str(w.friend.id)}}
    ),
}


async def _member_variables(attempt: Attempt, world: World) -> dict[str, Any]:
    variables = attempt.variables(world)
    if variables.get("expectedVersion") == -1:  # the current one: only the right is at stake
        variables["expectedVersion"] = await _version(world.course.course_id)
    return variables


@pytest.fixture
async def member(client: httpx.AsyncClient) -> Account:
    return await sign_up(client)


async def test_viewer_reads_and_keeps_its_own_learning_state(
    client: httpx.AsyncClient, world: World, member: Account
) -> None:
    await share(client, world.owner, world.course.course_id, member, "VIEWER")

    listed = await courses_of(client, member.token)
    assert listed["totalCount"] == 1
    assert listed["nodes"] == [{"id": _c(world), "title": VICTIM_TITLE, "viewerAccess": "VIEWER"}]
    course = await course_of(client, world.course.course_id, member.token)
    assert course["title"] == VICTIM_TITLE
    assert course["viewerAccess"] == "VIEWER"
    # The owner's progress, bookmark and note on this topic are not the member's.
    topic = _topic(course, world.course.topic_ids[0])
    assert (topic["progress"], topic["bookmarked"], topic["notes"]) == (None, False, [])

    # The member's learning state on a topic of the shared course, all its own.
    other_topic = _t(world, 1)
    done, body = await mutate(
        client, "completeTopic", {"input": {"topicId": other_topic, "score": 70}}, member.token
    )
    assert done["__typename"] == "CompleteTopicSuccess", body
    assert done["topic"]["progress"] == {"completed": True, "score": 70}
    marked, body = await mutate(
        client, "bookmarkTopic", {"input": {"topicId": other_topic}}, member.token
    )
    assert marked["__typename"] == "BookmarkTopicSuccess", body
    assert marked["topic"]["bookmarked"] is True
    note, body = await mutate(
        client,
        "saveNote",
        {"input": {"topicId": other_topic, "body": "the member's note"}},
        member.token,
    )
    assert note["__typename"] == "SaveNoteSuccess", body

    seen_by_member = _topic(
        await course_of(client, world.course.course_id, member.token), uuid.UUID(other_topic)
    )
    assert seen_by_member["progress"] == {"completed": True, "score": 70}
    assert seen_by_member["bookmarked"] is True
    assert [n["body"] for n in seen_by_member["notes"]] == ["the member's note"]

    seen_by_owner = _topic(
        await course_of(client, world.course.course_id, world.owner.token), uuid.UUID(other_topic)
    )
    assert (seen_by_owner["progress"], seen_by_owner["bookmarked"], seen_by_owner["notes"]) == (
        None,
        False,
        [],
    )
    # The owner's own state on topic 0 is unchanged and still only the owner's.
    owner_topic = _topic(
        await course_of(client, world.course.course_id, world.owner.token),
        world.course.topic_ids[0],
    )
    assert owner_topic["progress"] == {"completed": True, "score": 90}
    assert [n["id"] for n in owner_topic["notes"]] == [world.note_id]

    # A member may not touch the owner's note either.
    before = await snapshot()
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("saveNote", {"input": {"noteId": world.note_id, "body": "defaced"}}),
        ("deleteNote", {"id": world.note_id}),
    ]
    for field, variables in attempts:
        result, body = await mutate(client, field, variables, member.token)
        assert result["code"] == "NOT_FOUND", body
    assert await snapshot() == before


@pytest.mark.parametrize("name", [*EDITS, *OWNER_ONLY])
async def test_viewer_may_not_change_the_course(
    client: httpx.AsyncClient, world: World, member: Account, name: str
) -> None:
    await share(client, world.owner, world.course.course_id, member, "VIEWER")
    attempt = {**EDITS, **OWNER_ONLY}[name]
    variables = await _member_variables(attempt, world)
    before = await snapshot()

    result, body = await mutate(client, attempt.field, variables, member.token)

    assert result["__typename"] == "ForbiddenError", body
    assert result["code"] == "FORBIDDEN"
    assert await snapshot() == before


@pytest.mark.parametrize("name", list(EDITS))
async def test_editor_may_edit(
    client: httpx.AsyncClient, world: World, member: Account, name: str
) -> None:
    await share(client, world.owner, world.course.course_id, member, "EDITOR")
    course = await course_of(client, world.course.course_id, member.token)
    assert course["viewerAccess"] == "EDITOR"
    attempt = EDITS[name]
    variables = await _member_variables(attempt, world)
    version = await _version(world.course.course_id)
    before = await snapshot()

    result, body = await mutate(client, attempt.field, variables, member.token)

    assert result["__typename"].endswith("Success"), body
    assert await _version(world.course.course_id) == version + 1
    assert await snapshot() != before


async def test_editor_edits_are_what_was_asked(
    client: httpx.AsyncClient, world: World, member: Account
) -> None:
    await share(client, world.owner, world.course.course_id, member, "EDITOR")
    version = await _version(world.course.course_id)
    result, body = await mutate(
        client,
        "updateCourse",
        {"id": _c(world), "input": {"title": "Edited"}, "expectedVersion": version},
        member.token,
    )
    assert result["course"] == {"id": _c(world), "title": "Edited", "version": version + 1}, body
    moved, body = await mutate(
        client,
        "moveTopic",
        {"input": {"topicId": _t(world), "subjectId": _s(world, 1)}},
        member.token,
    )
    assert moved["topic"]["subjectId"] == _s(world, 1), body
    assert moved["topic"]["position"] == 3  # at the end of the other subject's three topics
    topic = await Topic.get(id=world.course.topic_ids[0])
    assert str(topic.subject_id) == _s(world, 1)


@pytest.mark.parametrize("name", list(OWNER_ONLY))
async def test_editor_may_not_delete_or_share(
    client: httpx.AsyncClient, world: World, member: Account, name: str
) -> None:
    await share(client, world.owner, world.course.course_id, member, "EDITOR")
    attempt = OWNER_ONLY[name]
    before = await snapshot()

    result, body = await mutate(client, attempt.field, attempt.variables(world), member.token)

    assert result["__typename"] == "ForbiddenError", body
    assert result["code"] == "FORBIDDEN"
    assert await snapshot() == before


@pytest.mark.parametrize("role", ["VIEWER", "EDITOR"])
async def test_owner_unshare_removes_access(
    client: httpx.AsyncClient, world: World, member: Account, role: str
) -> None:
    await share(client, world.owner, world.course.course_id, member, role)
    assert (await course_of(client, world.course.course_id, member.token))["title"] == VICTIM_TITLE

    result, body = await mutate(
        client,
        "unshareCourse",
        {"input": {"courseId": _c(world), "userId": str(member.id)}},
        world.owner.token,
    )
    assert result == {
        "__typename": "UnshareCourseSuccess",
        "courseId": _c(world),
        "userId": str(member.id),
    }, body

    assert await course_of(client, world.course.course_id, member.token) is None
    listed = await courses_of(client, member.token)
    assert (listed["totalCount"], listed["nodes"]) == (0, [])
    before = await snapshot()
    done, body = await mutate(
        client, "completeTopic", {"input": {"topicId": _t(world)}}, member.token
    )
    assert done["code"] == "NOT_FOUND", body
    assert await snapshot() == before
    assert not await CourseMember.filter(
        course_id=world.course.course_id, user_id=member.id
    ).exists()


async def test_member_may_leave(client: httpx.AsyncClient, world: World) -> None:
    """The friend (a VIEWER) unshares itself."""
    result, body = await mutate(
        client,
        "unshareCourse",
        {"input": {"courseId": _c(world), "userId": str(world.friend.id)}},
        world.friend.token,
    )
    assert result["__typename"] == "UnshareCourseSuccess", body
    assert await course_of(client, world.course.course_id, world.friend.token) is None
    assert (await courses_of(client, world.friend.token))["totalCount"] == 0
    # The owner keeps the course.
    assert (await course_of(client, world.course.course_id, world.owner.token))["members"] == []


async def test_deleted_course_is_gone_for_members(client: httpx.AsyncClient, world: World) -> None:
    result, body = await mutate(client, "deleteCourse", {"id": _c(world)}, world.owner.token)
    assert result == {"__typename": "DeleteCourseSuccess", "deletedId": _c(world)}, body
    for user in (world.owner, world.friend):
        assert await course_of(client, world.course.course_id, user.token) is None
        assert (await courses_of(client, user.token))["totalCount"] == 0
        done, body = await mutate(
            client, "bookmarkTopic", {"input": {"topicId": _t(world, 1)}}, user.token
        )
        assert done["code"] == "NOT_FOUND", body


# --------------------------------------------------------------------------------------------
# No token, or a token that is not valid: UNAUTHENTICATED everywhere
# --------------------------------------------------------------------------------------------

ANONYMOUS_ATTEMPTS: dict[str, Attempt] = {
    "createCourse": Attempt("createCourse", lambda w: {"input": {"title": "Anonymous"}}),
    "updateCourse": STRANGER_ATTEMPTS["updateCourse"],
    "deleteCourse": STRANGER_ATTEMPTS["deleteCourse"],
    "addSubject": STRANGER_ATTEMPTS["addSubject"],
    "addTopic": STRANGER_ATTEMPTS["addTopic"],
    "updateTopic": STRANGER_ATTEMPTS["updateTopic"],
    "moveTopic": STRANGER_ATTEMPTS["moveTopic"],
    "shareCourse": Attempt(
        "shareCourse",
        lambda w: {"input": {"courseId": _c(w), "email": w.stranger.email, "role": "EDITOR"}},
    ),
    "unshareCourse": STRANGER_ATTEMPTS["unshareCourse-member"],
    "completeTopic": STRANGER_ATTEMPTS["completeTopic"],
    "uncompleteTopic": STRANGER_ATTEMPTS["uncompleteTopic"],
    "bookmarkTopic": STRANGER_ATTEMPTS["bookmarkTopic"],
    "unbookmarkTopic": STRANGER_ATTEMPTS["unbookmarkTopic"],
    "saveNote-create": STRANGER_ATTEMPTS["saveNote-create-on-victim-topic"],
    "saveNote-edit": STRANGER_ATTEMPTS["saveNote-edit-victim-note"],
    "deleteNote": STRANGER_ATTEMPTS["deleteNote"],
    "logOut": Attempt("logOut", lambda w: {}),
}

BAD_TOKENS = {"no-token": None, "garbage-token": "not.a.jwt"}


# Public by design (accounts), and the generation jobs' mutations, which test_generation.py and
# the live-progress tests cover.
NOT_COVERED_HERE = {"signUp", "logIn", "refreshToken"} | {
    "generateCourse",
    "cancelGeneration",
    "retryGeneration",
    "streamToken",
    "syncPush",  # tests/test_sync_*.py
    "replayDeadLetter",  # operators only: tests/test_operations_admin.py (FORBIDDEN, bad ids)
}


async def test_every_mutation_is_covered(client: httpx.AsyncClient) -> None:
    """A new mutation of courses or learning state must join the tables above."""
    body = await gql(client, "{ __schema { mutationType { fields { name } } } }")
    fields = {field["name"] for field in body["data"]["__schema"]["mutationType"]["fields"]}
    assert set(MUTATIONS) == fields - NOT_COVERED_HERE
    assert {attempt.field for attempt in ANONYMOUS_ATTEMPTS.values()} == set(MUTATIONS)
    course_mutations = set(MUTATIONS) - {"createCourse", "logOut"}
    assert {attempt.field for attempt in STRANGER_ATTEMPTS.values()} == course_mutations


@pytest.mark.parametrize("token_kind", list(BAD_TOKENS))
@pytest.mark.parametrize("name", list(ANONYMOUS_ATTEMPTS))
async def test_mutation_without_valid_token_is_unauthenticated(
    client: httpx.AsyncClient, world: World, name: str, token_kind: str
) -> None:
    attempt = ANONYMOUS_ATTEMPTS[name]
    before = await snapshot()

    result, body = await mutate(
        client, attempt.field, attempt.variables(world), BAD_TOKENS[token_kind]
    )

    assert result["__typename"] == "UnauthenticatedError", body
    assert result["code"] == "UNAUTHENTICATED"
    assert VICTIM_TITLE not in json.dumps(body)
    assert await snapshot() == before


@pytest.mark.parametrize("token_kind", list(BAD_TOKENS))
@pytest.mark.parametrize("query", ["courses", "course"])
async def test_query_without_valid_token_is_unauthenticated(
    client: httpx.AsyncClient, world: World, query: str, token_kind: str
) -> None:
    document, variables = (
        (COURSES_QUERY, {}) if query == "courses" else (COURSE_QUERY, {"id": _c(world)})
    )
    body = await gql(client, document, variables, token=BAD_TOKENS[token_kind])

    assert body["data"] is None or body["data"][query] is None, body
    assert [error["extensions"]["code"] for error in body["errors"]] == ["UNAUTHENTICATED"]
    assert body["errors"][0]["path"] == [query]
    assert VICTIM_TITLE not in json.dumps(body)


async def test_me_without_token_is_null(client: httpx.AsyncClient) -> None:
    assert await gql(client, "{ me { id } }") == {"data": {"me": None}}
