"""Set-wise push (sync/batch.py): the same answers and the same state as one mutation at a time,
a bounded number of statements per batch, and a fallback when a set-wise write fails."""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from tortoise import connections

from models import (
    Bookmark,
    Course,
    CourseMember,
    CourseStatus,
    MemberRole,
    Note,
    Subject,
    SyncEntry,
    SyncRejection,
    SyncScope,
    Topic,
    TopicProgress,
    User,
    UserRole,
    UserTier,
    bulk,
)
from services import scopes
from services.accounts import Viewer
from services.ranks import rank_after
from settings import Settings
from sync import batch
from sync import push as pushes
from tests.conftest import TABLES
from tests.support import count_statements, make_course, sign_up
from tests.test_sync_support import clear_sync_tables, mutation, push_body, raw, sync_tables

pytestmark = pytest.mark.usefixtures("sync_tables")
_ = sync_tables

NS = uuid.UUID("0b6a3c52-6d1e-4c1f-9a57-3f1f6b0d2a10")


def _id(name: str) -> uuid.UUID:
    return uuid.uuid5(NS, name)


# The world: A (the pusher) owns CA and a deleted CD; B owns CB (shared with A read-only), CE
# (shared with A as editor) and CX (not shared). Each course has 2 subjects of 3 topics.
COURSES = {"CA": "A", "CD": "A", "CB": "B", "CE": "B", "CX": "B"}
TOPICS = [f"{c}.t{n}" for c in COURSES for n in range(6)]


async def _build() -> Viewer:
    for user in ("A", "B"):
        await User.create(
            id=_id(user), email=f"{user.lower()}@setwise.test", password_hash="x", display_name=user
        )
    for course, owner in COURSES.items():
        await Course.create(
            id=_id(course), owner_id=_id(owner), title=course, status=CourseStatus.READY
        )
        rank = None
        for s in range(2):
            rank = rank_after(rank)
            subject = await Subject.create(
                id=_id(f"{course}.s{s}"), course_id=_id(course), rank=rank, title="S", summary=""
            )
            topic_rank = None
            for t in range(3):
                topic_rank = rank_after(topic_rank)
                await Topic.create(
                    id=_id(f"{course}.t{s * 3 + t}"),
                    subject_id=subject.id,
                    course_id=_id(course),
                    rank=topic_rank,
                    title="T",
                    content="c",
                )
    await Course.filter(id=_id("CD")).update(deleted_at=datetime.now(UTC))
    await CourseMember.create(course_id=_id("CB"), user_id=_id("A"), role=MemberRole.VIEWER)
    await CourseMember.create(course_id=_id("CE"), user_id=_id("A"), role=MemberRole.EDITOR)
    await Note.create(id=_id("NA"), user_id=_id("A"), topic_id=_id("CA.t0"), body="mine")
    await Note.create(id=_id("NB"), user_id=_id("B"), topic_id=_id("CB.t0"), body="theirs")
    return Viewer(_id("A"), uuid.uuid4(), "a@setwise.test", "A", UserTier.FREE, UserRole.USER)


async def _wipe() -> None:
    db = connections.get("default")
    for table in TABLES:
        await db.execute_query(f"DELETE FROM {table}")  # noqa: S608 -- fixed names
    await clear_sync_tables()


def _mutations(seed: int, count: int) -> list[dict[str, Any]]:
    """A random queue of one client: every rule's branches, bad input and other users' ids."""
    rnd = random.Random(seed)
    wall = int(time.time() * 1000)
    notes = ["NA", "NA", "NA", "NB", "N1", "N2", "N3"]
    out = []
    for n in range(1, count + 1):
        kind = rnd.choice(
            ["completeTopic", "uncompleteTopic", "bookmarkTopic", "unbookmarkTopic"] * 3
            + ["createNote", "saveNote", "saveNote", "deleteNote"]
            + ["renameCourse", "updateCourseDetails", "moveTopic", "junk"]
        )
        topic = str(_id(rnd.choice([*TOPICS, "nowhere"])))
        course = str(_id(rnd.choice([*COURSES, "nowhere"])))
        note = str(_id(rnd.choice(notes)))
        args: Any
        if kind in ("completeTopic", "uncompleteTopic", "bookmarkTopic", "unbookmarkTopic"):
            args = {"topicId": topic}
            if kind == "completeTopic" and rnd.random() < 0.3:
                args["score"] = rnd.choice([0, 80, 100, 150, -1, "x", True])
        elif kind == "createNote":
            args = {"noteId": note, "topicId": topic, "body": rnd.choice(["a", "b", " ", "c"])}
        elif kind == "saveNote":
            args = {"noteId": note, "body": rnd.choice(["a", "b", "mine", "", "x" * 30_000])}
        elif kind == "deleteNote":
            args = {"noteId": note}
        elif kind == "renameCourse":
            args = {"courseId": course, "title": rnd.choice(["New", "", "y" * 300, 7])}
        elif kind == "updateCourseDetails":
            args = {"courseId": course}
            args.update(
                rnd.choice(
                    [
                        {"description": "d"},
                        {"level": "advanced"},
                        {"level": "expert"},
                        {"language": "fr", "description": "e"},
                        {"language": "x1"},
                        {},
                        {"description": None},
                    ]
                )
            )
        elif kind == "moveTopic":
            args = {"topicId": topic, "subjectId": str(_id("CA.s1"))}
        else:
            kind = rnd.choice(["completeTopic", "saveNote", "renameCourse", "noSuchThing"])
            args = rnd.choice([None, [], {"topicId": "not-a-uuid"}, {"extra": 1}, "s"])
        # Clocks mostly move forward; some are older than what they race, to be SUPERSEDED.
        clock = f"{wall + rnd.randint(-5000, 5000)}-{n}-c"
        if rnd.random() < 0.03:
            clock = "garbage"
        m = mutation("c", n, kind, args, hlc=clock)
        m["baseVersion"] = rnd.choice([None, 1, 1, 2, 3])
        out.append(m)
    return out


async def _state() -> dict[str, Any]:
    # A rejected edit one at a time rolls back the first lock (and back-fill) of its course's
    # scope with its savepoint; set-wise, the scope stays back-filled at version 1, as a pull
    # would leave it. Both worlds are back-filled before they are compared.
    async with scopes.transaction():
        for name in [*COURSES, "A", "B"]:
            key = scopes.user_scope(_id(name)) if len(name) == 1 else scopes.course_scope(_id(name))
            await scopes.lock(key)
    return {
        "progress": sorted(
            await TopicProgress.all().values_list("user_id", "topic_id", "completed", "score")
        ),
        "bookmarks": sorted(await Bookmark.all().values_list("user_id", "topic_id")),
        "notes": sorted(
            [
                (
                    str(n.id),
                    str(n.user_id),
                    str(n.topic_id),
                    n.body,
                    n.version,
                    n.deleted_at is None,
                )
                for n in await Note.all()
            ]
        ),
        "courses": sorted(
            await Course.all().values_list(
                "id", "title", "description", "level", "language", "version"
            )
        ),
        "entries": sorted(
            await SyncEntry.all().values_list(
                "scope", "type", "entity_id", "version", "op", "data", "clocks"
            )
        ),
        "scopes": sorted(await SyncScope.all().values_list("key", "version")),
        "rejections": sorted(
            await SyncRejection.all().values_list("mutation_id", "name", "kind", "code", "message")
        ),
    }


async def _play(viewer: Viewer, settings: Settings, queue: list[dict[str, Any]], seed: int) -> Any:
    rnd = random.Random(seed)
    env = pushes.SyncEnv(settings=settings)
    answers = []
    start = 0
    while start < len(queue):
        size = rnd.choice([1, 2, 5, 17, 60])
        body = push_body("g", *queue[start : start + size])
        answers.append((await pushes.push(viewer, json.loads(json.dumps(body)), env))["results"])
        start += size
    return answers, await _state()


async def test_set_wise_answers_and_writes_what_one_at_a_time_does(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    for seed in (1, 2, 3, 4):
        queue = _mutations(seed, 120)
        await _wipe()
        setwise = await _play(await _build(), settings, queue, seed)
        await _wipe()
        with monkeypatch.context() as patch:
            patch.setattr(batch, "SETWISE", frozenset())
            reference = await _play(await _build(), settings, queue, seed)
        answers = [r for answer in setwise[0] for r in answer]
        expected = [r for answer in reference[0] for r in answer]
        for ours, theirs in zip(answers, expected, strict=True):
            assert ours == theirs, queue[ours["id"] - 1]
        assert setwise[1] == reference[1]
        seen += answers
    # The queues reached every rule's branches.
    assert {"APPLIED", "REJECTED", "MERGED"} <= {r["status"] for r in seen}
    codes = {r.get("code") for r in seen}
    assert {"SUPERSEDED", "NOT_FOUND", "FORBIDDEN", "INVALID_INPUT", "ENTITY_DELETED"} <= codes
    assert {"CONFLICT_COPY", "PARTIAL"} & codes


def _mix(topics: list[str], note: str, course: str, count: int, start: int) -> list[dict[str, Any]]:
    names = ["completeTopic", "saveNote", "bookmarkTopic", "renameCourse", "unbookmarkTopic"]
    out = []
    for n in range(start, start + count):
        name = names[n % len(names)]
        if name == "saveNote":
            args: dict[str, Any] = {"noteId": note, "body": f"b{n}"}
        elif name == "renameCourse":
            args = {"courseId": course, "title": f"t{n}"}
        else:
            args = {"topicId": topics[n % len(topics)]}
        out.append(mutation("c", n, name, args))
    return out


async def test_statements_per_batch_do_not_grow_with_its_size(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    trees = [await make_course(user.id, subjects=5, topics=20) for _ in range(3)]
    topics = [str(t) for tree in trees for t in tree.topic_ids]
    note = str(uuid.uuid4())
    first = mutation("c", 1, "createNote", {"noteId": note, "topicId": topics[0], "body": "x"})
    assert (await raw(client, user.token, "/sync/push", push_body("g", first))).status_code == 200
    counts = {}
    start = 2
    for size in (10, 100, 1000):
        body = push_body("g", *_mix(topics, note, str(trees[0].course_id), size, start))
        with count_statements() as statements:
            response = await raw(client, user.token, "/sync/push", body)
        results = response.json()["results"]
        assert len(results) == size and {r["status"] for r in results} <= {"APPLIED", "MERGED"}
        counts[size] = len(statements)
        start += size
    # One keyed read per table and one multi-row write per table, whatever the batch size:
    # 1,000 mutations one at a time took about 9,000.
    assert counts[1000] <= 30, counts
    assert counts[1000] == counts[100], counts
    assert await TopicProgress.filter(user_id=user.id, completed=True).count() > 0


async def test_a_single_tap_costs_a_handful_of_statements(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # Batch 1 is a phone's single tap: its cost is round trips. On PostgreSQL: the session,
    # the client row locked with the user's scope (and the group's other clients read), one
    # read of everything the mutation names, one write of everything (BEGIN and COMMIT are
    # not counted). A course edit also locks the course's scope and reads who to poke.
    # SQLite reads table by table.
    user = await sign_up(client)
    tree = await make_course(user.id)
    topics = [str(t) for t in tree.topic_ids]
    note = str(uuid.uuid4())
    # The first touch of a course builds its scope's log once; taps after it are the steady cost.
    first = [
        mutation("c", 1, "createNote", {"noteId": note, "topicId": topics[0], "body": "x"}),
        mutation("c", 2, "renameCourse", {"courseId": str(tree.course_id), "title": "Named"}),
    ]
    assert (await raw(client, user.token, "/sync/push", push_body("g", *first))).status_code == 200
    postgres = settings.resolved_database_url.startswith("postgres")
    taps = [
        ("completeTopic", {"topicId": topics[1]}, None, 4),
        ("bookmarkTopic", {"topicId": topics[2]}, None, 4),
        ("saveNote", {"noteId": note, "body": "y"}, 1, 5),  # the note's upsert goes on its own
        ("renameCourse", {"courseId": str(tree.course_id), "title": "Renamed"}, None, 7),
    ]
    for n, (name, args, base, bound) in enumerate(taps, start=3):
        tap = mutation("c", n, name, args, base_version=base)
        with count_statements() as statements:
            answer = (await raw(client, user.token, "/sync/push", push_body("g", tap))).json()
        assert answer["results"][0]["status"] == "APPLIED", answer
        assert answer["lastMutationIds"] == {"c": n}
        if postgres:
            assert len(statements) <= bound, (name, [s[:70] for s in statements])


async def test_a_set_wise_run_whose_write_fails_is_applied_one_at_a_time(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id)
    topics = [str(t) for t in tree.topic_ids]
    real = bulk.insert
    failures: list[str] = []

    async def failing_progress_write(db: Any, table: str, *args: Any, **kwargs: Any) -> None:
        if table == "topic_progress" and not failures:
            failures.append(table)
            raise ValueError("a row the set-wise write cannot take")
        await real(db, table, *args, **kwargs)

    monkeypatch.setattr(bulk, "insert", failing_progress_write)
    ops = [mutation("c", n + 1, "completeTopic", {"topicId": topics[n]}) for n in range(3)]
    ops.append(mutation("c", 4, "completeTopic", {"topicId": "not-a-uuid"}))
    ops.append(mutation("c", 5, "bookmarkTopic", {"topicId": topics[0]}))
    answer = (await raw(client, user.token, "/sync/push", push_body("g", *ops))).json()
    assert failures == ["topic_progress"]
    assert [r["status"] for r in answer["results"]] == ["APPLIED"] * 3 + ["REJECTED", "APPLIED"]
    assert answer["lastMutationIds"] == {"c": 5}
    assert await TopicProgress.filter(user_id=user.id, completed=True).count() == 3
    assert await Bookmark.filter(user_id=user.id).count() == 1


async def test_another_users_ids_are_rejected_one_by_one_and_the_rest_apply(
    client: httpx.AsyncClient,
) -> None:
    me, other = await sign_up(client), await sign_up(client)
    mine, theirs = await make_course(me.id), await make_course(other.id)
    ops = [
        mutation("c", 1, "completeTopic", {"topicId": str(theirs.topic_ids[0])}),
        mutation("c", 2, "renameCourse", {"courseId": str(theirs.course_id), "title": "Mine"}),
        mutation("c", 3, "completeTopic", {"topicId": str(mine.topic_ids[0])}),
        mutation("c", 4, "bookmarkTopic", {"topicId": str(theirs.topic_ids[1])}),
    ]
    answer = (await raw(client, me.token, "/sync/push", push_body("g", *ops))).json()
    assert [(r["status"], r.get("code")) for r in answer["results"]] == [
        ("REJECTED", "FORBIDDEN"),
        ("REJECTED", "FORBIDDEN"),
        ("APPLIED", None),
        ("REJECTED", "FORBIDDEN"),
    ]
    assert (await Course.get(id=theirs.course_id)).title != "Mine"
    assert await TopicProgress.filter(topic_id=theirs.topic_ids[0]).count() == 0
    assert await Bookmark.filter(user_id=me.id).count() == 0
    assert await TopicProgress.filter(user_id=me.id, completed=True).count() == 1
    archived = await SyncRejection.filter(user_id=me.id).values_list("mutation_id", flat=True)
    assert sorted(archived) == [1, 2, 4]
