"""clients/js (our own protocol's JavaScript client) in Node against a real uvicorn server
(tests/js/sync_client_scenario.mjs): offline queue on IndexedDB and on a file, a restart,
retries through failures and a lost response (applied once), a token refresh, REJECTED rolled
back, pokes coalesced, a drifted replica rebuilt by checksums, and both devices ending with
the server's rows."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from models import Bookmark, Course, Note, SyncRejection, TopicProgress
from tests.support import make_course, sign_up
from tests.test_live_js import node as node
from tests.test_live_js import node_process
from tests.test_live_support import http as http
from tests.test_live_support import live_server as live_server
from tests.test_sync_support import sync_tables

pytestmark = pytest.mark.usefixtures("sync_tables")
_ = sync_tables


async def server_rows(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """Every row the user may see, `type/id` -> data, as a fresh client pulls it."""
    rows: dict[str, Any] = {}
    body: dict[str, Any] = {"protocolVersion": 1, "clientGroupId": uuid.uuid4().hex}
    while True:
        page = (
            await http.post("/sync/pull", json=body, headers={"authorization": f"Bearer {token}"})
        ).json()
        for p in page["patches"]:
            if p["op"] == "PUT":
                rows[f"{p['type']}/{p['id']}"] = p["data"]
        if not page["hasMore"]:
            return rows
        body["cookie"] = page["cookie"]


async def run_scenario(node: str, config: dict[str, Any]) -> dict[str, Any]:
    process = await node_process(node, "sync_client_scenario.mjs", json.dumps(config))
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()[-3000:]
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


async def test_the_js_client_syncs_offline_devices_exactly_once(
    node: str, http: httpx.AsyncClient, live_server: str, tmp_path: Path
) -> None:
    user = await sign_up(http)
    tree = await make_course(user.id, subjects=1, topics=3)
    topics = [str(t) for t in tree.topic_ids]
    course, note, ghost = str(tree.course_id), str(uuid.uuid4()), str(uuid.uuid4())
    out = await run_scenario(
        node,
        {
            "base": live_server,
            "token": user.token,
            "topics": topics,
            "courseId": course,
            "noteId": note,
            "ghost": ghost,
            "file": str(tmp_path / "d2.json"),
        },
    )
    assert f"course/{course}" in out["initialKeys"]
    # Offline: shown at once, queued, kept across a restart.
    assert out["optimistic"]["ghost"]["completed"] is True
    assert out["optimistic"]["title"] == "Renamed offline"
    assert out["offlineError"] == "UNAVAILABLE"
    assert out["afterRestart"] == {"pending": 3, "sameGroup": True}
    # Back online: retried through two failures and a lost response; a token refresh.
    assert out["stats"]["d1"]["retries"] >= 3
    assert out["stats"]["d2"]["refreshes"] == 1
    assert out["pending"] == {"d1": 0, "d2": 0}
    statuses = {(r["device"], r["name"]): r["status"] for r in out["results"]}
    assert ("d1", "completeTopic") in statuses
    rejected = [r for r in out["results"] if r["status"] == "REJECTED"]
    assert [(r["device"], r["name"], r["code"]) for r in rejected] == [
        ("d2", "completeTopic", "NOT_FOUND")
    ]
    assert out["pokePulls"] == 2
    assert out["driftBefore"] is False and out["driftRestarts"] == 1

    # Both devices hold exactly the server's rows; the rejected change is gone from them.
    truth = await server_rows(http, user.token)
    assert out["views"]["d1"] == out["views"]["d2"] == truth
    assert f"progress/{ghost}" not in out["views"]["d2"]
    # Each change applied once.
    progress = await TopicProgress.filter(user_id=user.id).values_list(
        "topic_id", "completed", "score"
    )
    assert sorted((str(t), c, s) for t, c, s in progress) == sorted(
        [(topics[0], True, 70), (topics[2], True, None)]
    )
    assert await Note.filter(user_id=user.id).count() == 1
    assert (await Note.get(id=note)).body == "from d1"
    # Bookmarked by d1 offline, then removed by d1 online: d2 learnt it from a poke alone.
    assert out["poked"]["gone"] is True and out["poked"]["pulls"] >= 1
    assert await Bookmark.filter(user_id=user.id).count() == 0
    assert (await Course.get(id=course)).title == "Renamed offline"
    assert await SyncRejection.filter(kind="rejected").count() == 1
