"""Sync protocol: exactly-once pushes, ordering, conflict rules, pulls, cookies, access."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest

from models import Course, CourseMember, MemberRole, Note, SyncRejection, TopicProgress
from services import courses, scopes
from sync import hlc as hlc_module
from sync import push as sync_push
from tests.support import gql, make_course, sign_up
from tests.test_sync_support import device, mutation, push_body, raw, sync_tables

pytestmark = pytest.mark.usefixtures("sync_tables")
_ = sync_tables


async def test_push_applies_once_and_a_retry_gets_the_stored_result(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id)
    topic = str(tree.topic_ids[0])
    body = push_body(
        "g1",
        mutation("c1", 1, "completeTopic", {"topicId": topic, "score": 90}),
        mutation("c1", 2, "noSuchMutation", {}),
        mutation("c1", 3, "bookmarkTopic", {"topicId": topic}),
    )
    first = (await raw(client, user.token, "/sync/push", body)).json()
    assert [r["status"] for r in first["results"]] == ["APPLIED", "REJECTED", "APPLIED"]
    assert first["results"][1]["code"] == "UNKNOWN_MUTATION"
    assert first["lastMutationIds"] == {"c1": 3}
    again = (await raw(client, user.token, "/sync/push", body)).json()
    assert [r["status"] for r in again["results"]] == ["DUPLICATE"] * 3
    assert [r.get("firstStatus") for r in again["results"]] == ["APPLIED", "REJECTED", "APPLIED"]
    assert again["results"][1]["code"] == "UNKNOWN_MUTATION"
    assert await TopicProgress.filter(user_id=user.id).count() == 1
    rejected = await SyncRejection.filter(group_id="g1").values_list("name", "code")
    assert rejected == [("noSuchMutation", "UNKNOWN_MUTATION")]


async def test_a_long_batch_commits_in_bounded_transactions_and_loses_nothing(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_push, "TRANSACTION_MUTATIONS", 3)
    user = await sign_up(client)
    tree = await make_course(user.id, subjects=2, topics=5)
    topics = [str(t) for t in tree.topic_ids]
    ops = [mutation("c", n + 1, "completeTopic", {"topicId": topics[n]}) for n in range(10)]
    ops[4] = mutation("c", 5, "completeTopic", {"topicId": "not-a-uuid"})  # in the second run
    ops.append(mutation("c", 13, "bookmarkTopic", {"topicId": topics[0]}))  # a gap: 11, 12
    first = (await raw(client, user.token, "/sync/push", push_body("long", *ops))).json()
    statuses = [r["status"] for r in first["results"]]
    assert statuses == ["APPLIED"] * 4 + ["REJECTED"] + ["APPLIED"] * 5 + ["OUT_OF_ORDER"]
    assert first["lastMutationIds"] == {"c": 10}
    assert await TopicProgress.filter(user_id=user.id, completed=True).count() == 9
    again = (await raw(client, user.token, "/sync/push", push_body("long", *ops[:10]))).json()
    assert [r["firstStatus"] for r in again["results"]] == statuses[:10]


async def test_an_id_gap_is_out_of_order_and_blocks_the_rest_of_that_client(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id)
    topic = str(tree.topic_ids[0])
    body = push_body(
        "g2",
        mutation("a", 2, "completeTopic", {"topicId": topic}),
        mutation("a", 3, "bookmarkTopic", {"topicId": topic}),
        mutation("b", 1, "bookmarkTopic", {"topicId": topic}),
    )
    result = (await raw(client, user.token, "/sync/push", body)).json()
    assert [r["status"] for r in result["results"]] == ["OUT_OF_ORDER", "OUT_OF_ORDER", "APPLIED"]
    assert result["lastMutationIds"] == {"a": 0, "b": 1}
    assert not await TopicProgress.filter(user_id=user.id).exists()


async def test_a_spoofed_client_group_is_refused(client: httpx.AsyncClient) -> None:
    alice, mallory = await sign_up(client), await sign_up(client)
    tree = await make_course(alice.id)
    ok = await raw(client, alice.token, "/sync/pull", {"protocolVersion": 1, "clientGroupId": "G"})
    assert ok.status_code == 200
    body = push_body("G", mutation("c", 1, "bookmarkTopic", {"topicId": str(tree.topic_ids[0])}))
    refused = await raw(client, mallory.token, "/sync/push", body)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "FORBIDDEN"
    pull = await raw(
        client, mallory.token, "/sync/pull", {"protocolVersion": 1, "clientGroupId": "G"}
    )
    assert pull.status_code == 403
    assert (
        await raw(client, "", "/sync/pull", {"protocolVersion": 1, "clientGroupId": "H"})
    ).status_code == 401
    # GraphQL: the same as a result union
    query = """mutation($input: SyncPushInput!) { syncPush(input: $input) {
        __typename ... on UserError { code } } }"""
    response = await gql(client, query, {"input": body}, token=mallory.token)
    assert response["data"]["syncPush"] == {"__typename": "ForbiddenError", "code": "FORBIDDEN"}


async def test_graphql_push_and_pull(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id, subjects=1, topics=2)
    push = """mutation($input: SyncPushInput!) { syncPush(input: $input) {
        ... on SyncPushSuccess { results { id status } lastMutationIds } } }"""
    body = push_body(
        "gq", mutation("c", 1, "renameCourse", {"courseId": str(tree.course_id), "title": "T2"})
    )
    out = await gql(client, push, {"input": body}, token=user.token)
    assert out["data"]["syncPush"]["results"] == [{"id": 1, "status": "APPLIED"}]
    pull = """query($input: SyncPullInput!) { syncPull(input: $input) {
        ... on SyncPullSuccess { cookie hasMore lastMutationIds patches { op scope type id data } } } }"""
    page = (
        await gql(
            client, pull, {"input": {"protocolVersion": 1, "clientGroupId": "gq"}}, token=user.token
        )
    )["data"]["syncPull"]
    assert page["hasMore"] is False and page["lastMutationIds"] == {"c": 1}
    titles = [p["data"]["title"] for p in page["patches"] if p["type"] == "course"]
    assert titles == ["T2"]
    assert len([p for p in page["patches"] if p["type"] == "topic"]) == 2


@pytest.mark.parametrize("delete_first", [True, False])
async def test_delete_versus_edit_in_both_orders(
    client: httpx.AsyncClient, delete_first: bool
) -> None:
    owner = await sign_up(client)
    tree = await make_course(owner.id)
    phone, _ = device(client, owner.token)
    laptop, _ = device(client, owner.token)
    await phone.pull()
    await laptop.pull()
    phone.mutate("deleteCourse", {"courseId": str(tree.course_id)})
    laptop.mutate("renameCourse", {"courseId": str(tree.course_id), "title": "Renamed offline"})
    first, second = (phone, laptop) if delete_first else (laptop, phone)
    r1, r2 = await first.push(), await second.push()
    assert r1 and r2
    if delete_first:
        assert r2["results"][0]["status"] == "REJECTED"
        assert r2["results"][0]["code"] == "ENTITY_DELETED"
        assert r2["results"][0]["canonical"][0]["op"] == "DEL"
        assert await SyncRejection.filter(name="renameCourse").exists()
    else:
        assert [r1["results"][0]["status"], r2["results"][0]["status"]] == ["APPLIED", "APPLIED"]
    for d in (phone, laptop):
        await d.pull()
        assert d.pending() == []
        assert [k for k in d.view() if k[0] == "course"] == []
    assert (await Course.get(id=tree.course_id)).deleted_at is not None
    assert phone.view() == laptop.view()


async def test_concurrent_note_edits_keep_both_texts(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id)
    a, _ = device(client, user.token)
    b, _ = device(client, user.token)
    note_id = str(uuid.uuid4())
    a.mutate("createNote", {"noteId": note_id, "topicId": str(tree.topic_ids[0]), "body": "v1"})
    await a.sync()
    await b.pull()
    a.mutate("saveNote", {"noteId": note_id, "body": "from A"}, base_version=1)
    b.mutate("saveNote", {"noteId": note_id, "body": "from B"}, base_version=1)
    ra, rb = await a.push(), await b.push()
    assert ra and rb
    assert ra["results"][-1]["status"] == "APPLIED"
    merged = rb["results"][0]
    assert merged["status"] == "MERGED"
    copy_id = merged["data"]["conflictNoteId"]
    bodies = dict(await Note.filter(user_id=user.id, deleted_at=None).values_list("id", "body"))
    assert {str(k): v for k, v in bodies.items()} == {note_id: "from A", copy_id: "from B"}
    await a.pull()
    await b.pull()
    assert a.view() == b.view()
    assert await SyncRejection.filter(kind="conflict").count() == 1


async def test_concurrent_moves_keep_every_topic_once(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id, subjects=1, topics=4)
    subject = str(tree.subject_ids[0])
    t = [str(x) for x in tree.topic_ids]
    a, _ = device(client, user.token)
    b, _ = device(client, user.token)
    c, _ = device(client, user.token, clock_offset_ms=1000)  # its clock is later
    for d in (a, b, c):
        await d.pull()
    a.mutate("moveTopic", {"topicId": t[0], "subjectId": subject, "after": t[3]})
    b.mutate("moveTopic", {"topicId": t[1], "subjectId": subject, "before": t[0]})
    c.mutate("moveTopic", {"topicId": t[0], "subjectId": subject, "before": t[2]})  # later hlc
    for d in (a, b, c):
        await d.push()
    for d in (a, b, c):
        await d.pull()
    topics = sorted(
        (row for (kind, _), row in a.view().items() if kind == "topic"),
        key=lambda r: r["rank"].encode(),
    )
    assert sorted(r["id"] for r in topics) == sorted(t)
    assert len({r["rank"] for r in topics}) == 4
    order = [r["id"] for r in topics]
    assert order.index(t[0]) < order.index(t[2])  # c's move (later) of t0 won over a's
    assert a.view() == b.view() == c.view()


async def test_a_clock_a_year_ahead_cannot_win_for_ever(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id)
    year = 365 * 24 * 3600 * 1000
    fast, _ = device(client, user.token, clock_offset_ms=year)
    honest, _ = device(client, user.token)
    fast.mutate("renameCourse", {"courseId": str(tree.course_id), "title": "From the future"})
    await fast.sync()
    honest.mutate("renameCourse", {"courseId": str(tree.course_id), "title": "Now"})
    result = await honest.push()
    assert result and result["results"][0]["code"] == "SUPERSEDED"  # within 5 minutes: it wins
    # Ten minutes later on the server, an honest edit wins: the fast clock was clamped.
    later = hlc_module.server_now_ms() + 10 * 60 * 1000
    monkeypatch.setattr(hlc_module, "server_now_ms", lambda: later)
    honest.clock_offset_ms = 10 * 60 * 1000
    honest.mutate("renameCourse", {"courseId": str(tree.course_id), "title": "Later"})
    await honest.sync()
    assert (await Course.get(id=tree.course_id)).title == "Later"


async def test_writes_during_a_multi_page_pull_are_neither_lost_nor_skipped(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id, subjects=3, topics=10)
    reader, _ = device(client, user.token)
    await reader.pull_page(limit=7)
    # Writes commit between pages: an edit of a row not sent yet, one already sent, a new row.
    await courses.update_topic(user.id, tree.topic_ids[-1], {"title": "edited late"})
    await courses.update_topic(user.id, tree.topic_ids[0], {"title": "edited early"})
    new = await courses.add_topic(user.id, tree.subject_ids[1], {"title": "brand new"})
    pages = 1
    while (await reader.pull_page(limit=7))["hasMore"]:
        pages += 1
    assert pages > 3
    rows = reader.server_rows()
    assert rows[("topic", str(tree.topic_ids[-1]))]["title"] == "edited late"
    assert rows[("topic", str(tree.topic_ids[0]))]["title"] == "edited early"
    assert rows[("topic", str(new.id))]["title"] == "brand new"
    assert len([k for k in rows if k[0] == "topic"]) == 31
    fresh, _ = device(client, user.token)
    await fresh.pull(limit=1000)
    assert fresh.server_rows() == rows


async def test_a_cookie_past_the_horizon_resets_and_pending_mutations_survive(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id)
    d, _ = device(client, user.token)
    note_id = str(uuid.uuid4())
    d.mutate("createNote", {"noteId": note_id, "topicId": str(tree.topic_ids[0]), "body": "x"})
    await d.sync()
    other, _ = device(client, user.token)
    await other.pull()
    other.mutate("deleteNote", {"noteId": note_id})
    await other.sync()
    d.mutate("bookmarkTopic", {"topicId": str(tree.topic_ids[1])})  # pending, offline
    assert await scopes.collect_tombstones(timedelta(0)) >= 1
    page = await d.pull_page()
    assert page["resetScopes"] == [scopes.user_scope(user.id)]
    assert ("note", note_id) not in d.server_rows()
    assert ("bookmark", str(tree.topic_ids[1])) in d.view()  # the queue survived the reset
    await d.sync()
    assert d.pending() == []
    assert ("bookmark", str(tree.topic_ids[1])) in d.server_rows()


async def test_unsharing_drops_the_scope_and_later_pushes_are_forbidden(
    client: httpx.AsyncClient,
) -> None:
    owner, member = await sign_up(client), await sign_up(client)
    tree = await make_course(owner.id)
    await CourseMember.create(course_id=tree.course_id, user_id=member.id, role=MemberRole.EDITOR)
    d, _ = device(client, member.token)
    await d.pull()
    assert ("course", str(tree.course_id)) in d.server_rows()  # gained: sent whole
    await courses.unshare_course(owner.id, tree.course_id, member.id)
    page = await d.pull_page()
    assert {
        "op": "DROP_SCOPE",
        "scope": scopes.course_scope(tree.course_id),
        "type": "",
        "id": "",
        "version": 0,
    } in page["patches"]
    assert not [k for k in d.server_rows() if k[0] in ("course", "topic")]
    d.mutate("renameTopic", {"topicId": str(tree.topic_ids[0]), "title": "mine"})
    result = await d.push()
    assert result and result["results"][0]["status"] == "REJECTED"
    assert result["results"][0]["code"] == "FORBIDDEN"


async def test_request_course_generation_starts_one_job(client: httpx.AsyncClient) -> None:
    from models import GenerationJob

    user = await sign_up(client)
    d, wire = device(client, user.token)
    course_id = str(uuid.uuid4())
    d.mutate(
        "requestCourseGeneration",
        {
            "courseId": course_id,
            "topic": "Sailing basics",
            "subjectCount": 1,
            "topicsPerSubject": 1,
        },
    )
    wire.lose_next = 1
    with pytest.raises(ConnectionError):
        await d.push()
    await d.push()  # the retry: DUPLICATE of the stored result
    assert wire.log[-1][2]["results"][0]["status"] == "DUPLICATE"
    assert wire.log[-1][2]["results"][0]["data"]["courseId"] == course_id
    assert await GenerationJob.filter(course_id=course_id).count() == 1
    for _ in range(100):
        if (await Course.get(id=course_id)).status == "ready":
            break
        await asyncio.sleep(0.01)
        await d.pull()
    await d.pull()
    assert d.server_rows()[("course", course_id)]["status"] in ("generating", "ready")


async def test_invalid_requests(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    bad = await raw(
        client,
        user.token,
        "/sync/push",
        {"protocolVersion": 2, "clientGroupId": "g", "mutations": []},
    )
    assert bad.status_code == 400
    many = push_body("g", *[mutation("c", i, "x", {}) for i in range(1, 1002)])
    assert (await raw(client, user.token, "/sync/push", many)).status_code == 400
    forged = await raw(
        client,
        user.token,
        "/sync/pull",
        {"protocolVersion": 1, "clientGroupId": "g", "cookie": "abc"},
    )
    assert forged.status_code == 400 and forged.json()["error"]["field"] == "cookie"
    tree = await make_course(user.id)
    r = await raw(
        client,
        user.token,
        "/sync/push",
        push_body("g", mutation("c", 1, "completeTopic", {"topicId": "nope"})),
    )
    assert r.json()["results"][0]["code"] == "INVALID_INPUT"
    r = await raw(
        client,
        user.token,
        "/sync/push",
        push_body(
            "g",
            mutation("c", 2, "completeTopic", {"topicId": str(tree.topic_ids[0])}, hlc="garbage"),
        ),
    )
    assert r.json()["results"][0]["code"] == "INVALID_INPUT"
    assert r.json()["lastMutationIds"] == {"c": 2}
