"""Replicache's push/pull protocol v1 (`/replicache/*`, sync/replicache.py): the mapping onto
our mutators and scopes, cookies as Replicache needs them, and every kind of bad input. The
unmodified npm client is driven against a real server in tests/test_replicache_js.py."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from models import CourseMember, MemberRole, Note, TopicProgress
from services import courses
from tests.support import make_course, sign_up
from tests.test_sync_support import raw, sync_tables

pytestmark = pytest.mark.usefixtures("sync_tables")
_ = sync_tables


def rmut(client: str, mid: int, name: str, args: Any) -> dict[str, Any]:
    return {"clientID": client, "id": mid, "name": name, "args": args, "timestamp": 1234.5}


def push_body(group: str, *mutations: dict[str, Any]) -> dict[str, Any]:
    return {
        "pushVersion": 1,
        "schemaVersion": "1",
        "profileID": "p1",
        "clientGroupID": group,
        "mutations": list(mutations),
    }


def pull_body(group: str, cookie: Any = None) -> dict[str, Any]:
    return {
        "pullVersion": 1,
        "schemaVersion": "1",
        "profileID": "p1",
        "clientGroupID": group,
        "cookie": cookie,
    }


async def rpush(client: httpx.AsyncClient, token: str, body: dict[str, Any]) -> httpx.Response:
    return await raw(client, token, "/replicache/push", body)


async def rpull(client: httpx.AsyncClient, token: str, group: str, cookie: Any = None) -> Any:
    response = await raw(client, token, "/replicache/pull", pull_body(group, cookie))
    assert response.status_code == 200, response.text
    return response.json()


def store(patch: list[dict[str, Any]], into: dict[str, Any] | None = None) -> dict[str, Any]:
    """A client's key/value store after applying a patch, as Replicache applies it."""
    kv = dict(into or {})
    for op in patch:
        if op["op"] == "clear":
            kv.clear()
        elif op["op"] == "put":
            kv[op["key"]] = op["value"]
        else:
            assert op["op"] == "del", op
            kv.pop(op["key"], None)
    return kv


async def test_push_then_pull_maps_mutators_keys_and_mutation_ids(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id, subjects=1, topics=3)
    t0, t1, t2 = (str(t) for t in tree.topic_ids)
    note = str(uuid.uuid4())
    group = uuid.uuid4().hex
    body = push_body(
        group,
        rmut("c1", 1, "completeTopic", {"topicId": t0, "score": 80}),
        rmut("c1", 2, "bookmarkTopic", {"topicId": t1}),
        rmut("c1", 3, "createNote", {"noteId": note, "topicId": t2, "body": "first"}),
        rmut("c2", 1, "saveNote", {"noteId": note, "body": "second", "baseVersion": 1}),
        rmut("c2", 2, "noSuchMutator", {}),
    )
    first = await rpush(client, user.token, body)
    assert first.status_code == 200, first.text
    statuses = [r["status"] for r in first.json()["results"]]
    assert statuses == ["APPLIED", "APPLIED", "APPLIED", "APPLIED", "REJECTED"]
    # A retry of the same push (Replicache re-sends until a pull confirms) applies nothing.
    again = await rpush(client, user.token, body)
    assert {r["status"] for r in again.json()["results"]} == {"DUPLICATE"}
    assert await TopicProgress.filter(user_id=user.id).count() == 1
    assert (await Note.get(id=note)).body == "second"  # baseVersion from args: applied, no copy
    assert await Note.filter(user_id=user.id).count() == 1

    answer = await rpull(client, user.token, group)
    assert answer["patch"][0] == {"op": "clear"}
    assert answer["lastMutationIDChanges"] == {"c1": 3, "c2": 2}
    assert answer["cookie"]["order"] == 1
    kv = store(answer["patch"])
    assert kv[f"progress/{t0}"]["completed"] is True
    assert f"bookmark/{t1}" in kv
    assert kv[f"note/{note}"]["body"] == "second"
    assert kv[f"course/{tree.course_id}"]["title"]
    assert {f"topic/{t}" for t in (t0, t1, t2)} <= set(kv)
    assert all("/" in key and not key.startswith(("user:", "course:")) for key in kv)

    # Nothing new: the cookie comes back as it was, with nothing in it (Replicache insists).
    same = await rpull(client, user.token, group, answer["cookie"])
    assert same == {"cookie": answer["cookie"], "lastMutationIDChanges": {}, "patch": []}

    # A change: order grows, only what changed is sent.
    more = push_body(group, rmut("c1", 4, "uncompleteTopic", {"topicId": t0}))
    assert (await rpush(client, user.token, more)).status_code == 200
    after = await rpull(client, user.token, group, answer["cookie"])
    assert after["cookie"]["order"] == 2
    assert [op["key"] for op in after["patch"]] == [f"progress/{t0}"]
    assert after["lastMutationIDChanges"]["c1"] == 4
    assert store(after["patch"], kv)[f"progress/{t0}"]["completed"] is False


async def test_a_rejected_mutation_only_advances_the_mutation_id(
    client: httpx.AsyncClient,
) -> None:
    """Another user's course: REJECTED, nothing written, and the id is confirmed so Replicache
    drops the optimistic change on its next pull (its rollback)."""
    owner, stranger = await sign_up(client), await sign_up(client)
    tree = await make_course(owner.id)
    group = uuid.uuid4().hex
    body = push_body(
        group,
        rmut("s", 1, "completeTopic", {"topicId": str(tree.topic_ids[0])}),
        rmut("s", 2, "renameCourse", {"courseId": str(tree.course_id), "title": "Mine now"}),
    )
    result = (await rpush(client, stranger.token, body)).json()
    assert [r["status"] for r in result["results"]] == ["REJECTED", "REJECTED"]
    assert await TopicProgress.filter(user_id=stranger.id).count() == 0
    answer = await rpull(client, stranger.token, group)
    assert answer["lastMutationIDChanges"] == {"s": 2}
    kv = store(answer["patch"])
    assert not any(str(tree.course_id) in key or key.startswith("topic/") for key in kv)


async def test_a_lost_scope_becomes_a_del_of_each_of_its_keys(client: httpx.AsyncClient) -> None:
    owner, member = await sign_up(client), await sign_up(client)
    tree = await make_course(owner.id, subjects=1, topics=2)
    await CourseMember.create(course_id=tree.course_id, user_id=member.id, role=MemberRole.EDITOR)
    group = uuid.uuid4().hex
    first = await rpull(client, member.token, group)
    kv = store(first["patch"])
    course_keys = {k for k in kv if not k.startswith(("progress/", "note/", "bookmark/"))}
    assert f"course/{tree.course_id}" in course_keys
    assert f"member/{tree.course_id}/{member.id}" in course_keys
    await courses.unshare_course(owner.id, tree.course_id, member.id)
    second = await rpull(client, member.token, group, first["cookie"])
    assert second["cookie"]["order"] == 2
    kv = store(second["patch"], kv)
    assert not course_keys & set(kv)


async def test_bad_input_gets_a_code_and_changes_nothing(client: httpx.AsyncClient) -> None:
    user, other = await sign_up(client), await sign_up(client)
    tree = await make_course(user.id)
    topic = str(tree.topic_ids[0])
    group = uuid.uuid4().hex
    good = rmut("c", 1, "completeTopic", {"topicId": topic})

    def error(response: httpx.Response, status: int, code: str, field: str | None) -> None:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["field"] == field

    # Versions this server does not speak: Replicache's own answer, with status 200.
    old = {**push_body(group, good), "pushVersion": 0}
    response = await rpush(client, user.token, old)
    assert response.json() == {"error": "VersionNotSupported", "versionType": "push"}
    old_pull = {**pull_body(group), "pullVersion": 0}
    response = await raw(client, user.token, "/replicache/pull", old_pull)
    assert response.json() == {"error": "VersionNotSupported", "versionType": "pull"}
    # Malformed requests: 400 with the field in Replicache's spelling; nothing applied.
    error(await rpush(client, user.token, {**push_body(group), "mutations": "x"}), 400,
          "INVALID_INPUT", "mutations")  # fmt: skip
    no_client = {k: v for k, v in good.items() if k != "clientID"}
    error(await rpush(client, user.token, push_body(group, good, no_client)), 400,
          "INVALID_INPUT", "mutations.1.clientID")  # fmt: skip
    no_group = {**push_body(group, good), "clientGroupID": None}
    error(await rpush(client, user.token, no_group), 400, "INVALID_INPUT", "clientGroupID")
    bad_id = {**good, "id": "one"}
    error(await rpush(client, user.token, push_body(group, bad_id)), 400,
          "INVALID_INPUT", "mutations.0.id")  # fmt: skip
    too_many = [rmut("c", n + 1, "completeTopic", {"topicId": topic}) for n in range(1001)]
    error(await rpush(client, user.token, push_body(group, *too_many)), 400,
          "INVALID_INPUT", "mutations")  # fmt: skip
    response = await client.post(
        "/replicache/push", content=b"{not json", headers={"authorization": f"Bearer {user.token}"}
    )
    error(response, 400, "INVALID_INPUT", None)
    assert await TopicProgress.filter(user_id=user.id).count() == 0
    # Authentication as elsewhere; another user's client group is refused as a whole.
    response = await client.post("/replicache/push", json=push_body(group, good))
    error(response, 401, "UNAUTHENTICATED", None)
    assert (await rpush(client, user.token, push_body(group, good))).status_code == 200
    error(await rpush(client, other.token, push_body(group, good)), 403, "FORBIDDEN", None)
    response = await raw(client, other.token, "/replicache/pull", pull_body(group))
    error(response, 403, "FORBIDDEN", None)
    # Args of the wrong shape: that mutation REJECTED, the valid one after it applied.
    shapes = push_body(
        group,
        rmut("c", 2, "bookmarkTopic", {"topicId": 7}),
        rmut("c", 3, "bookmarkTopic", "not an object"),
        rmut("c", 4, "bookmarkTopic", {"topicId": topic}),
    )
    results = (await rpush(client, user.token, shapes)).json()["results"]
    assert [(r["status"], r.get("code")) for r in results] == [
        ("REJECTED", "INVALID_INPUT"),
        ("REJECTED", "INVALID_INPUT"),
        ("APPLIED", None),
    ]
    # Cookies this server did not issue, or of a group it does not know: the client starts over.
    first = await rpull(client, user.token, group)
    forged = {**first["cookie"], "c": first["cookie"]["c"][:-2] + "xx"}
    for cookie in (forged, {"order": 1}, "a string", 7, {**first["cookie"], "order": 0}):
        assert await rpull(client, user.token, group, cookie) == {"error": "ClientStateNotFound"}
    stranger_group = await rpull(client, user.token, uuid.uuid4().hex, first["cookie"])
    assert stranger_group == {"error": "ClientStateNotFound"}
