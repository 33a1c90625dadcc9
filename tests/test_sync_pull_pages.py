"""Pull pages under concurrent pushes: a randomized test. One device pushes random batches while
another pulls page by page with random page sizes; no row is missed or seen out of order."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

import httpx
import pytest

from models import SyncEntry
from tests.support import make_course, sign_up
from tests.test_sync_support import mutation, push_body, raw, sync_tables

pytestmark = pytest.mark.usefixtures("sync_tables")
_ = sync_tables

Key = tuple[str, str, str]
NAMES = [
    "completeTopic",
    "uncompleteTopic",
    "bookmarkTopic",
    "unbookmarkTopic",
    "saveNote",
    "renameCourse",
]


async def test_pages_pulled_during_pushes_miss_nothing_and_stay_in_order(
    client: httpx.AsyncClient,
) -> None:
    rnd = random.Random(11)
    user = await sign_up(client)
    trees = [await make_course(user.id, subjects=2, topics=5) for _ in range(2)]
    topics = [str(t) for tree in trees for t in tree.topic_ids]
    notes = [str(uuid.uuid4()) for _ in range(4)]
    versions = dict.fromkeys(notes, 1)
    created = [
        mutation("w", n + 1, "createNote", {"noteId": note, "topicId": topics[n], "body": "0"})
        for n, note in enumerate(notes)
    ]
    assert (await raw(client, user.token, "/sync/push", push_body("writer", *created))).is_success
    next_id = len(notes) + 1
    pushing = True

    async def writer() -> None:
        nonlocal next_id, pushing
        wall = int(time.time() * 1000)
        for _ in range(25):
            batch = []
            for _ in range(rnd.randint(1, 30)):
                name = rnd.choice(NAMES)
                if name == "saveNote":
                    note = rnd.choice(notes)
                    args: dict[str, Any] = {"noteId": note, "body": f"b{next_id}"}
                    m = mutation("w", next_id, name, args, base_version=versions[note])
                    versions[note] += 1
                elif name == "renameCourse":
                    course = str(rnd.choice(trees).course_id)
                    m = mutation("w", next_id, name, {"courseId": course, "title": f"t{next_id}"})
                else:
                    m = mutation("w", next_id, name, {"topicId": rnd.choice(topics)})
                m["hlc"] = f"{wall}-{next_id}-w"
                batch.append(m)
                next_id += 1
            answer = await raw(client, user.token, "/sync/push", push_body("writer", *batch))
            assert {r["status"] for r in answer.json()["results"]} == {"APPLIED"}
            await asyncio.sleep(rnd.random() * 0.01)
        pushing = False

    local: dict[Key, tuple[int, Any]] = {}
    last_seen: dict[str, tuple[int, str, str]] = {}  # per scope: the last (version, type, id)
    cookie: str | None = None
    pages = 0

    async def pull_until_done() -> bool:
        """One walk of pages until hasMore is false; whether anything arrived."""
        nonlocal cookie, pages
        arrived = False
        while True:
            body = {
                "protocolVersion": 1,
                "clientGroupId": "reader",
                "cookie": cookie,
                "limit": rnd.randint(1, 40),
            }
            page = (await raw(client, user.token, "/sync/pull", body)).json()
            pages += 1
            assert page["resetScopes"] == []
            for patch in page["patches"]:
                arrived = True
                scope = patch["scope"]
                order = (patch["version"], patch["type"], patch["id"])
                # Per scope, every row arrives after the ones before it, never again at or
                # below a place already passed: a row changed meanwhile comes back later,
                # with its new version.
                assert scope not in last_seen or order > last_seen[scope], (patch, last_seen)
                last_seen[scope] = order
                key = (scope, patch["type"], patch["id"])
                if patch["op"] == "PUT":
                    local[key] = (patch["version"], patch["data"])
                else:
                    local.pop(key, None)
            cookie = page["cookie"]
            if not page["hasMore"]:
                return arrived

    async def reader() -> None:
        while pushing:
            await pull_until_done()
            await asyncio.sleep(rnd.random() * 0.01)

    await asyncio.gather(writer(), reader())
    await pull_until_done()
    assert pages > 25
    server = {
        (e.scope, e.type, e.entity_id): (int(e.version), json.loads(e.data or "null"))
        for e in await SyncEntry.filter(op="PUT")
    }
    assert local == server
    assert not await pull_until_done()  # nothing left to send
