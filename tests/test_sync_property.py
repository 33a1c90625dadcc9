"""Property: devices of two users sharing a course, random offline schedules, random mutations,
random batch sizes, duplicated/reordered deliveries, lost responses, random page sizes. After
every queue drains: every device equals the server, the server equals a small reference model
of the rules, and every mutation was applied exactly once."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import Bookmark, Course, CourseMember, MemberRole, Note, Topic, TopicProgress
from sync.client import SyncReplica
from sync.hlc import parse
from sync.mutators import CONFLICT_NAMESPACE
from tests.support import TestUser as Account
from tests.support import make_course, sign_up
from tests.test_sync_support import Wire, clear_sync_tables

TOPICS = 3
WORDS = ["alpha", "beta", "gamma", "delta"]

mutations = st.one_of(
    st.tuples(
        st.sampled_from(["completeTopic", "uncompleteTopic", "bookmarkTopic", "unbookmarkTopic"]),
        st.integers(0, TOPICS - 1),
    ),
    st.tuples(st.just("renameCourse"), st.sampled_from(WORDS)),
    st.tuples(st.just("updateCourseDetails"), st.sampled_from(WORDS)),
    st.tuples(st.just("renameTopic"), st.integers(0, TOPICS - 1), st.sampled_from(WORDS)),
    st.tuples(st.just("moveTopic"), st.integers(0, TOPICS - 1), st.integers(-1, TOPICS - 1)),
    st.tuples(st.just("createNote"), st.integers(0, 1), st.sampled_from(WORDS)),
    st.tuples(st.just("saveNote"), st.integers(0, 1), st.sampled_from(WORDS)),
    st.tuples(st.just("deleteNote"), st.integers(0, 1)),
)
actions = st.lists(
    st.one_of(
        st.tuples(st.just("mutate"), st.integers(0, 2), mutations),
        st.tuples(
            st.just("push"),
            st.integers(0, 2),
            st.integers(1, 4),
            st.sampled_from(["ok", "lose", "dup", "reorder"]),
        ),
        st.tuples(st.just("pull"), st.integers(0, 2), st.integers(1, 8)),
    ),
    max_size=14,
)

_users: list[Account] = []


@dataclass
class World:
    devices: list[SyncReplica]
    wires: list[Wire]
    owners: list[Account]
    course_id: str
    subject_id: str
    topics: list[str]
    notes: dict[tuple[int, int], str] = field(default_factory=dict)


def _mutation(world: World, index: int, spec: tuple[Any, ...]) -> None:
    d = world.devices[index]
    user = 0 if index < 2 else 1
    name = spec[0]
    t = world.topics
    if name in ("completeTopic", "uncompleteTopic", "bookmarkTopic", "unbookmarkTopic"):
        d.mutate(name, {"topicId": t[spec[1]]})
    elif name == "renameCourse":
        d.mutate(name, {"courseId": world.course_id, "title": spec[1]})
    elif name == "updateCourseDetails":
        d.mutate(name, {"courseId": world.course_id, "description": spec[1]})
    elif name == "renameTopic":
        d.mutate(name, {"topicId": t[spec[1]], "title": spec[2]})
    elif name == "moveTopic":
        after = t[spec[2]] if spec[2] >= 0 and spec[2] != spec[1] else None
        d.mutate(name, {"topicId": t[spec[1]], "subjectId": world.subject_id, "after": after})
    else:
        note = world.notes.setdefault((user, spec[1]), str(uuid.uuid4()))
        if name == "createNote":
            d.mutate(name, {"noteId": note, "topicId": t[0], "body": spec[2]})
        elif name == "saveNote":
            version = d.view().get(("note", note), {}).get("version", 0)
            d.mutate(name, {"noteId": note, "body": spec[2]}, base_version=version)
        else:
            d.mutate(name, {"noteId": note})


async def _push(d: SyncReplica, wire: Wire, batch: int, fault: str) -> None:
    try:
        if fault == "lose":
            wire.lose_next = 1
            try:
                await d.push(batch)
            finally:
                wire.lose_next = 0
        elif fault == "dup":
            await d.push(batch)
            await d.push(batch)
        elif fault == "reorder" and len(d.pending()) >= 2:
            later = d.pending()[1:]
            await wire(
                "/sync/push", {"protocolVersion": 1, "clientGroupId": d.group, "mutations": later}
            )
            await d.push(batch)
        else:
            await d.push(batch)
    except ConnectionError:
        pass


class Model:
    """The rules, replayed in the order the server first processed each mutation."""

    def __init__(self) -> None:
        self.fields: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.done: dict[tuple[int, str], tuple[bool, Any]] = {}
        self.marks: dict[tuple[int, str], tuple[bool, Any]] = {}
        self.notes: dict[str, dict[str, Any]] = {}

    def lww(self, key: tuple[str, str, str], value: Any, clock: Any) -> None:
        if key not in self.fields or clock > self.fields[key][1]:
            self.fields[key] = (value, clock)

    def apply(self, user: int, group: str, m: dict[str, Any]) -> str:
        name, args, clock = m["name"], m["args"], parse(m["hlc"])
        if name in ("completeTopic", "uncompleteTopic"):
            key = (user, args["topicId"])
            if key not in self.done or clock > self.done[key][1]:
                self.done[key] = (name == "completeTopic", clock)
        elif name == "bookmarkTopic":
            old = self.marks.get((user, args["topicId"]))
            self.marks[(user, args["topicId"])] = (
                True,
                max(clock, old[1]) if old and old[1] else clock,
            )
        elif name == "unbookmarkTopic":
            old = self.marks.get((user, args["topicId"]))
            if old is None or old[1] is None or clock > old[1]:
                self.marks[(user, args["topicId"])] = (False, old[1] if old else None)
        elif name == "renameCourse":
            self.lww(("course", args["courseId"], "title"), args["title"], clock)
        elif name == "updateCourseDetails":
            self.lww(("course", args["courseId"], "description"), args["description"], clock)
        elif name == "renameTopic":
            self.lww(("topic", args["topicId"], "title"), args["title"], clock)
        elif name == "moveTopic":
            pass  # checked as an invariant: every topic once, distinct ranks
        elif name == "createNote":
            note = self.notes.get(args["noteId"])
            if note is None:
                self.notes[args["noteId"]] = {
                    "user": user,
                    "body": args["body"],
                    "version": 1,
                    "deleted": False,
                }
            elif note["deleted"]:
                return "REJECTED"
        elif name == "saveNote":
            note = self.notes.get(args["noteId"])
            if note is None or note["deleted"]:
                return "REJECTED"
            if m["baseVersion"] == note["version"]:
                note.update(body=args["body"], version=note["version"] + 1)
            elif args["body"] != note["body"]:
                copy = str(
                    uuid.uuid5(
                        CONFLICT_NAMESPACE, f"{args['noteId']}/{group}/{m['clientId']}/{m['id']}"
                    )
                )
                self.notes[copy] = {
                    "user": user,
                    "body": args["body"],
                    "version": 1,
                    "deleted": False,
                }
                return "MERGED"
        elif name == "deleteNote":
            note = self.notes.get(args["noteId"])
            if note is None:
                return "REJECTED"
            note["deleted"] = True
        return "APPLIED"


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=actions)
async def test_devices_converge_on_the_rules(client: httpx.AsyncClient, steps: list[Any]) -> None:
    while len(_users) < 2:
        _users.append(await sign_up(client))
    owner, member = _users
    await clear_sync_tables()
    await Course.filter(owner_id__in=[owner.id, member.id]).delete()
    await Note.filter(user_id__in=[owner.id, member.id]).delete()
    tree = await make_course(owner.id, subjects=1, topics=TOPICS)
    await CourseMember.create(course_id=tree.course_id, user_id=member.id, role=MemberRole.EDITOR)
    shared: list[Any] = []
    wires = [Wire(client, u.token, shared) for u in (owner, owner, member)]
    world = World(
        devices=[SyncReplica(w, client_group_id=uuid.uuid4().hex) for w in wires],
        wires=wires,
        owners=[owner, owner, member],
        course_id=str(tree.course_id),
        subject_id=str(tree.subject_ids[0]),
        topics=[str(x) for x in tree.topic_ids],
    )
    for d in world.devices:
        await d.pull()
    for step in steps:
        d, wire = world.devices[step[1]], world.wires[step[1]]
        if step[0] == "mutate":
            _mutation(world, step[1], step[2])
        elif step[0] == "push":
            await _push(d, wire, step[2], step[3])
        else:
            with contextlib.suppress(ConnectionError):
                await d.pull(limit=step[2])
    for _ in range(2):
        for d in world.devices:
            await d.sync()
    for d in world.devices:
        assert d.pending() == []

    # Exactly once: each mutation has one first processing, in the order the server answered.
    model = Model()
    seen: dict[tuple[str, str, int], str] = {}
    user_of = {d.group: (0 if n < 2 else 1) for n, d in enumerate(world.devices)}
    timeline = [
        (user_of[body["clientGroupId"]], body, resp)
        for path, body, resp in shared
        if path == "/sync/push"
    ]
    for user_index, body, resp in timeline:
        by_id = {(m["clientId"], m["id"]): m for m in body["mutations"]}
        for r in resp["results"]:
            if r["status"] in ("APPLIED", "MERGED", "REJECTED"):
                key = (body["clientGroupId"], r["clientId"], r["id"])
                assert key not in seen, f"applied twice: {key}"
                m = by_id[(r["clientId"], r["id"])]
                expected = model.apply(user_index, body["clientGroupId"], m)
                assert r["status"] == expected, (m, r)
                seen[key] = r["status"]
    for d in world.devices:
        made = int(d._meta("next") or "1") - 1
        assert sorted(k[2] for k in seen if k[0] == d.group) == list(range(1, made + 1))

    # The server equals the model.
    course = await Course.get(id=tree.course_id)
    assert course.title == model.fields.get(("course", world.course_id, "title"), ("A course",))[0]
    assert (
        course.description == model.fields.get(("course", world.course_id, "description"), ("",))[0]
    )
    topics = await Topic.filter(course_id=tree.course_id).values("id", "title", "rank")
    assert len(topics) == TOPICS and len({t["rank"] for t in topics}) == TOPICS
    for t in topics:
        default = next(f"Topic 0.{n}" for n, x in enumerate(world.topics) if x == str(t["id"]))
        assert t["title"] == model.fields.get(("topic", str(t["id"]), "title"), (default,))[0]
    users = [owner.id, member.id]
    for (u, topic), (done, _) in model.done.items():
        row = await TopicProgress.get(user_id=users[u], topic_id=topic)
        assert row.completed == done
    marks = {
        (users.index(b.user_id), str(b.topic_id)) for b in await Bookmark.filter(user_id__in=users)
    }
    assert marks == {k for k, (present, _) in model.marks.items() if present}
    live = {str(n.id): n.body for n in await Note.filter(user_id__in=users, deleted_at=None)}
    assert live == {k: n["body"] for k, n in model.notes.items() if not n["deleted"]}

    # Every device equals the server (a fresh replica of its user).
    for d, user in zip(world.devices, world.owners, strict=True):
        await d.pull(limit=5)
        fresh = SyncReplica(Wire(client, user.token))
        await fresh.pull()
        assert d.view() == fresh.server_rows()
