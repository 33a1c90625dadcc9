"""Garbage collection past the tombstone horizon (a setting): stored mutation results are
pruned but each client's latest is kept, retries stay DUPLICATE and apply nothing twice; the
horizon drives tombstone collection and so `resetScopes`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from models import Note, SyncMutationResult, TopicProgress
from services import scopes
from settings import Settings
from sync import gc
from tests.support import make_course, sign_up
from tests.test_sync_support import device, mutation, push_body, raw, sync_tables

pytestmark = pytest.mark.usefixtures("sync_tables")
_ = sync_tables


async def _push(client: httpx.AsyncClient, token: str, body: dict) -> list[dict]:
    response = await raw(client, token, "/sync/push", body)
    assert response.status_code == 200, response.text
    results: list[dict] = response.json()["results"]
    return results


async def test_pruning_keeps_each_clients_latest_result_and_retries_stay_duplicate(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id)
    topics = [str(t) for t in tree.topic_ids]
    old_batch = push_body(
        "g",
        *[mutation("c", n + 1, "completeTopic", {"topicId": topics[n]}) for n in range(5)],
        *[
            mutation(
                "d",
                n + 1,
                "createNote",
                {"noteId": str(uuid.uuid4()), "topicId": topics[0], "body": "x"},
            )
            for n in range(2)
        ],
    )
    assert {r["status"] for r in await _push(client, user.token, old_batch)} == {"APPLIED"}
    # Those results are 40 days old; a third client's are fresh.
    await SyncMutationResult.all().update(created_at=datetime.now(UTC) - timedelta(days=40))
    fresh = push_body(
        "g", *[mutation("e", n + 1, "bookmarkTopic", {"topicId": topics[n]}) for n in range(3)]
    )
    await _push(client, user.token, fresh)

    collected = await gc.collect(timedelta(days=30))
    assert collected.results == 4 + 1
    kept = await SyncMutationResult.all().values_list("client__client_id", "mutation_id")
    assert sorted((str(c), int(m)) for c, m in kept) == [
        ("c", 5),
        ("d", 2),
        ("e", 1),
        ("e", 2),
        ("e", 3),
    ]

    # The whole old batch again (a device back after 40 days that never saw the answer).
    retried = await _push(client, user.token, old_batch)
    assert [r["status"] for r in retried] == ["DUPLICATE"] * 7
    assert [r.get("code") for r in retried[:4]] == ["RESULT_PRUNED"] * 4
    assert retried[4].get("firstStatus") == "APPLIED" and retried[4].get("code") is None
    assert retried[5].get("code") == "RESULT_PRUNED" and retried[6]["firstStatus"] == "APPLIED"
    assert await TopicProgress.filter(user_id=user.id, completed=True).count() == 5
    assert await Note.filter(user_id=user.id).count() == 2
    # A second collection has nothing left to prune.
    assert (await gc.collect(timedelta(days=30))).results == 0


async def test_the_horizon_setting_drives_collection_and_resets(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().sync_tombstone_horizon_days == 30
    monkeypatch.setattr(settings, "sync_gc_interval_seconds", 0)  # collect on every pull
    user = await sign_up(client)
    tree = await make_course(user.id)
    writer, _ = device(client, user.token)
    note_id = str(uuid.uuid4())
    writer.mutate("createNote", {"noteId": note_id, "topicId": str(tree.topic_ids[0]), "body": "x"})
    await writer.sync()
    reader, _ = device(client, user.token)
    await reader.pull()
    old_cookie = reader._meta("cookie")
    writer.mutate("deleteNote", {"noteId": note_id})
    await writer.sync()

    async def pull_with(cookie: str | None) -> dict:
        body = {"protocolVersion": 1, "clientGroupId": reader.group, "cookie": cookie}
        response = await raw(client, user.token, "/sync/pull", body)
        assert response.status_code == 200, response.text
        page: dict = response.json()
        return page

    # Within the default horizon of 30 days the tombstone stays: the old cookie gets a DEL.
    page = await pull_with(old_cookie)
    assert page["resetScopes"] == []
    assert [p["op"] for p in page["patches"] if p["id"] == note_id] == ["DEL"]
    # A horizon shorter than the tombstone's age: the pull collects it, the old cookie resets.
    monkeypatch.setattr(settings, "sync_tombstone_horizon_days", 1e-9)
    page = await pull_with(old_cookie)
    assert page["resetScopes"] == [scopes.user_scope(user.id)]
    assert note_id not in {p["id"] for p in page["patches"]}
