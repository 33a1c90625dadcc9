"""The unmodified npm `replicache` client (tests/js, pinned by package-lock.json), in Node with
fake-indexeddb, syncing with a real uvicorn server over /replicache/push and /replicache/pull:
two devices of one user change things offline, one of them is closed and opened again before it
is back, both reconnect and converge with the server; a rejected change is rolled back on the
device; a device of another user sees nothing of theirs."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from models import Bookmark, Course, Note, TopicProgress
from tests.support import make_course, sign_up
from tests.test_live_js import node as node
from tests.test_live_js import node_process
from tests.test_live_support import http as http
from tests.test_live_support import live_server as live_server
from tests.test_replicache import pull_body, store
from tests.test_sync_support import sync_tables

pytestmark = pytest.mark.usefixtures("sync_tables")
_ = sync_tables


class Devices:
    """`node replicache_devices.mjs`: one command line in, one answer line out."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, node: str, base: str) -> Devices:
        return cls(await node_process(node, "replicache_devices.mjs", base))

    async def ask(self, cmd: str, device: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        line = json.dumps({"cmd": cmd, "device": device, **fields}) + "\n"
        self.process.stdin.write(line.encode())
        await self.process.stdin.drain()
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout=30)
        if not raw:
            assert self.process.stderr is not None
            raise AssertionError((await self.process.stderr.read()).decode()[-2000:])
        answer: dict[str, Any] = json.loads(raw)
        assert answer.pop("ok"), answer
        return answer

    async def mutate(self, device: str, name: str, **args: Any) -> dict[str, Any]:
        return await self.ask("mutate", device, name=name, args=args)

    async def kv(self, device: str) -> dict[str, Any]:
        answer = await self.ask("dump", device)
        assert answer["pending"] == 0, answer
        kv: dict[str, Any] = answer["kv"]
        return kv

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=10)
        except TimeoutError:
            self.process.kill()


async def server_view(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """What the server holds for a user, as a brand-new Replicache client would receive it."""
    body = pull_body(uuid.uuid4().hex)
    response = await http.post(
        "/replicache/pull", json=body, headers={"authorization": f"Bearer {token}"}
    )
    return store(response.json()["patch"])


async def test_two_devices_offline_converge_and_a_stranger_sees_nothing(
    node: str, http: httpx.AsyncClient, live_server: str
) -> None:
    owner, stranger = await sign_up(http), await sign_up(http)
    tree = await make_course(owner.id, subjects=1, topics=4)
    t0, t1, t2, t3 = (str(t) for t in tree.topic_ids)
    course = str(tree.course_id)
    note = str(uuid.uuid4())
    devices = await Devices.start(node, live_server)
    try:
        for device, user in (("a1", owner), ("a2", owner), ("b1", stranger)):
            await devices.ask("open", device, token=user.token)
            await devices.ask("sync", device)
        assert f"course/{course}" in await devices.kv("a1")
        assert f"topic/{t0}" in await devices.kv("a2")
        assert await devices.kv("b1") == {}

        await devices.ask("offline", "a1")
        await devices.ask("offline", "a2")
        await devices.mutate("a1", "completeTopic", topicId=t0, score=90)
        await devices.mutate("a1", "completeTopic", topicId=t1)
        await devices.mutate("a1", "createNote", noteId=note, topicId=t2, body="from a1")
        await devices.mutate("a1", "bookmarkTopic", topicId=t3)
        await devices.mutate("a1", "renameCourse", courseId=course, title="Renamed by a1")
        await devices.mutate("a2", "completeTopic", topicId=t2)
        await devices.mutate("a2", "bookmarkTopic", topicId=t0)
        ghost = str(uuid.uuid4())  # no such topic: the server rejects it
        await devices.mutate("a2", "completeTopic", topicId=ghost)
        # Shown at once, while offline (optimistic).
        offline = await devices.ask("dump", "a2")
        assert offline["pending"] == 3
        assert offline["kv"][f"progress/{ghost}"]["completed"] is True
        assert offline["kv"][f"bookmark/{t0}"] == {"topicId": t0}
        # a1 is closed and opened again (an app restart) before the network is back: its
        # queue is in IndexedDB and survives. Replicache writes its memory to IndexedDB about a
        # second after a change (a browser also on `pagehide`); a restart sooner loses them.
        await asyncio.sleep(1.5)
        await devices.ask("close", "a1")
        await devices.ask("open", "a1", token=owner.token, offline=True)
        reopened = await devices.ask("dump", "a1")
        assert reopened["pending"] == 5
        assert reopened["kv"][f"course/{course}"]["title"] == "Renamed by a1"
        assert await TopicProgress.filter(user_id=owner.id).count() == 0  # nothing sent yet

        # The stranger, online, tries to change the owner's course: rejected, nothing shown.
        await devices.mutate("b1", "completeTopic", topicId=t0)
        await devices.mutate("b1", "renameCourse", courseId=course, title="Stolen")

        # Back online: a1 first, then a2, whose later changes win where they meet.
        await devices.ask("online", "a1")
        await devices.ask("sync", "a1")
        await devices.mutate("a2", "uncompleteTopic", topicId=t1)
        await devices.mutate("a2", "renameCourse", courseId=course, title="Renamed by a2")
        await devices.ask("online", "a2")
        await devices.ask("sync", "a2")
        await devices.ask("sync", "a1")
        await devices.ask("sync", "b1")

        a1, a2, b1 = await devices.kv("a1"), await devices.kv("a2"), await devices.kv("b1")
        truth = await server_view(http, owner.token)
        assert a1 == a2 == truth
        assert b1 == await server_view(http, stranger.token)
    finally:
        await devices.stop()

    # The server applied each change once, by the rules.
    assert f"progress/{ghost}" not in a2  # rejected, and rolled back on the device
    progress = dict(
        await TopicProgress.filter(user_id=owner.id).values_list("topic_id", "completed")
    )
    assert {str(k): v for k, v in progress.items()} == {t0: True, t1: False, t2: True}
    assert a1[f"progress/{t1}"]["completed"] is False
    assert (await Note.get(id=note)).body == "from a1"
    bookmarks = await Bookmark.filter(user_id=owner.id).values_list("topic_id", flat=True)
    assert {str(b) for b in bookmarks} == {t0, t3}
    assert (await Course.get(id=course)).title == "Renamed by a2"
    assert a1[f"course/{course}"]["title"] == "Renamed by a2"
    # The stranger: nothing applied, nothing of the owner's on its device.
    assert await TopicProgress.filter(user_id=stranger.id).count() == 0
    assert not any(course in key or key.startswith(("topic/", "note/")) for key in b1)
