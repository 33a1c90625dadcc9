"""syncPoke: a subscriber hears of every commit that changes a scope it can see (another
device's push, a web mutation, a finished generation), over graphql-transport-ws, graphql-ws and
graphql-sse, and across processes through Redis; never of scopes it cannot see."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from models import GenerationJob, JobStatus, SyncEntry, SyncScope
from services import scopes
from settings import Settings
from tests import support
from tests.servers import PrivateRedis
from tests.support import gql, make_course, sign_up, spawn_worker
from tests.test_live_support import (
    REDIS_RUN,
    free_port,
    generate,
    read_sse,
    spawn_web,
    stop,
    wait_ready,
)
from tests.test_live_support import http as http
from tests.test_live_support import live_server as live_server
from tests.test_sync_support import device, mutation, push_body, raw, sync_tables

pytestmark = pytest.mark.usefixtures("sync_tables")
_ = sync_tables

POKE = "subscription { syncPoke { scopes { scope version } resync } }"
UPDATE_COURSE = """
mutation($id: ID!, $input: UpdateCourseInput!, $v: Int!) {
  updateCourse(id: $id, input: $input, expectedVersion: $v) { __typename }
}
"""
SHARE = "mutation($input: ShareCourseInput!) { shareCourse(input: $input) { __typename } }"
UNSHARE = "mutation($input: UnshareCourseInput!) { unshareCourse(input: $input) { __typename } }"

Poke = dict[str, int]  # {scope: version}


class Pokes:
    """The pokes of one subscription as they arrive (resyncs left out)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Poke] = asyncio.Queue()
        self.probes: set[str] = set()  # scopes of `subscribed`'s probes: left out too
        self.live = asyncio.Event()  # a probe's poke came back

    def offer(self, poke: dict[str, Any]) -> None:
        items = {item["scope"]: item["version"] for item in poke["scopes"]}
        if poke["resync"]:
            return
        if items and set(items) <= self.probes:
            self.live.set()
            return
        self.queue.put_nowait(items)

    async def next(self, limit: float = 30) -> Poke:
        return await asyncio.wait_for(self.queue.get(), timeout=limit)

    async def until(self, scope: str, version: int) -> list[Poke]:
        """The pokes up to the one that brings `scope` to `version` or later."""
        seen = []
        while True:
            seen.append(await self.next())
            if seen[-1].get(scope, 0) >= version:
                return seen


async def _ws_reader(base: str, token: str, protocol: str, pokes: Pokes) -> None:
    url = base.replace("http", "ws", 1) + "/graphql"
    async with connect(url, subprotocols=[protocol]) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await socket.send(json.dumps(init))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        start = "subscribe" if protocol == "graphql-transport-ws" else "start"
        await socket.send(json.dumps({"id": "1", "type": start, "payload": {"query": POKE}}))
        async for raw_message in socket:
            message = json.loads(raw_message)
            if message["type"] in ("next", "data"):
                pokes.offer(message["payload"]["data"]["syncPoke"])
            elif message["type"] not in ("ping", "pong", "ka"):
                raise AssertionError(message)


async def _sse_reader(base: str, token: str, pokes: Pokes) -> None:
    headers = {"authorization": f"Bearer {token}", "accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=base, timeout=60) as client,
        client.stream("POST", "/graphql/stream", json={"query": POKE}, headers=headers) as response,
    ):
        assert response.status_code == 200
        async for message in read_sse(response):
            if message.event == "next":
                pokes.offer(json.loads(message.data)["data"]["syncPoke"])


async def _new_course(base: str, user: support.TestUser, course_id: str | None = None) -> str:
    """A commit of the user's own: a new course, through a push. Returns its scope."""
    course_id = course_id or str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=base, timeout=15) as client:
        body = push_body(
            uuid.uuid4().hex,
            mutation("c", 1, "createCourse", {"courseId": course_id, "title": "probe"}),
        )
        assert (await raw(client, user.token, "/sync/push", body)).status_code == 200
    return scopes.course_scope(course_id)


@asynccontextmanager
async def subscribed(
    base: str, user: support.TestUser, transport: str = "graphql-transport-ws"
) -> AsyncIterator[Pokes]:
    """A live syncPoke subscription of the user: yielded once a commit of its own came back."""
    pokes = Pokes()
    reader = (
        _sse_reader(base, user.token, pokes)
        if transport == "graphql-sse"
        else _ws_reader(base, user.token, transport, pokes)
    )
    task = asyncio.create_task(reader)
    try:
        for _ in range(100):  # the server may not listen yet: probe until it answers
            probe = str(uuid.uuid4())
            pokes.probes.add(scopes.course_scope(probe))
            await _new_course(base, user, probe)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pokes.live.wait(), timeout=0.3)
                break
            assert not task.done(), task.result()
        else:
            raise AssertionError("the subscription never received a poke")
        yield pokes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def version_of(scope: str) -> int:
    return int((await SyncScope.get(key=scope)).version)


async def test_a_push_from_another_device_pokes_the_user(
    http: httpx.AsyncClient, live_server: str
) -> None:
    user = await sign_up(http)
    tree = await make_course(user.id)
    async with subscribed(live_server, user) as pokes:
        body = push_body(
            "other-device", mutation("c", 1, "completeTopic", {"topicId": str(tree.topic_ids[0])})
        )
        assert (await raw(http, user.token, "/sync/push", body)).status_code == 200
        scope = scopes.user_scope(user.id)
        poke = await pokes.next()
        assert poke == {scope: await version_of(scope)}
        # The reference client pulls when poked, and then has the other device's change.
        replica, _ = device(http, user.token)
        await replica.poked()
        assert replica.server_rows()[("progress", str(tree.topic_ids[0]))]["completed"] is True


async def test_web_mutations_poke_the_owner_and_members_and_whoever_is_removed(
    http: httpx.AsyncClient, live_server: str
) -> None:
    owner, member = await sign_up(http), await sign_up(http)
    tree = await make_course(owner.id)
    course_id = str(tree.course_id)
    scope = scopes.course_scope(course_id)
    share = {"input": {"courseId": course_id, "email": member.email, "role": "EDITOR"}}
    assert (await gql(http, SHARE, share, token=owner.token))["data"]["shareCourse"][
        "__typename"
    ] == "ShareCourseSuccess"
    async with (
        subscribed(live_server, owner, "graphql-ws") as owner_pokes,
        subscribed(live_server, member) as member_pokes,
    ):
        change = {"id": course_id, "input": {"title": "Renamed on the web"}, "v": 2}
        result = await gql(http, UPDATE_COURSE, change, token=owner.token)
        assert result["data"]["updateCourse"]["__typename"] == "UpdateCourseSuccess", result
        version = await version_of(scope)
        assert await owner_pokes.next() == {scope: version}
        assert await member_pokes.next() == {scope: version}

        unshare = {"input": {"courseId": course_id, "userId": str(member.id)}}
        result = await gql(http, UNSHARE, unshare, token=owner.token)
        assert result["data"]["unshareCourse"]["__typename"] == "UnshareCourseSuccess"
        # The member who lost the course is told to pull (and gets its DROP_SCOPE).
        assert await member_pokes.next() == {scope: await version_of(scope)}
        assert await owner_pokes.next() == {scope: await version_of(scope)}


async def test_a_finished_generation_pokes_the_owner(
    http: httpx.AsyncClient, live_server: str
) -> None:
    user = await sign_up(http)
    async with subscribed(live_server, user, "graphql-sse") as pokes:
        job_id, course_id = await generate(http, user.token, subjects=2, topics=2)
        scope = scopes.course_scope(course_id)
        while True:
            poke = await pokes.next()
            job = await GenerationJob.get(id=job_id)
            if (
                scope in poke
                and job.status is JobStatus.SUCCEEDED
                and poke[scope] == await version_of(scope)
            ):
                break  # the poke of the commit that wrote the syllabus


async def test_no_pokes_for_scopes_you_cannot_see(
    http: httpx.AsyncClient, live_server: str
) -> None:
    watcher, stranger = await sign_up(http), await sign_up(http)
    theirs = await make_course(stranger.id)
    async with subscribed(live_server, watcher) as pokes:
        change = {"id": str(theirs.course_id), "input": {"title": "Not yours"}, "v": 1}
        result = await gql(http, UPDATE_COURSE, change, token=stranger.token)
        assert result["data"]["updateCourse"]["__typename"] == "UpdateCourseSuccess", result
        body = push_body(
            "stranger", mutation("c", 1, "bookmarkTopic", {"topicId": str(theirs.topic_ids[0])})
        )
        assert (await raw(http, stranger.token, "/sync/push", body)).status_code == 200
        # Pokes of one channel arrive in order: the watcher's own next commit comes first.
        own = await _new_course(live_server, watcher)
        assert await pokes.next() == {own: await version_of(own)}


needs_redis = pytest.mark.skipif(
    not REDIS_RUN or not PrivateRedis.available(), reason="PostgreSQL + Redis run"
)


@needs_redis
async def test_pokes_cross_processes_from_pushes_and_a_worker(
    settings: Settings, tmp_path: Path
) -> None:
    # Web processes A and B and a worker process share PostgreSQL and a Redis of their own
    # (so the test process's own worker cannot take the job).
    redis = PrivateRedis()
    redis.start()
    ports = free_port(), free_port()
    webs = [spawn_web(settings, port, redis_url=redis.url, data_dir=tmp_path) for port in ports]
    worker = spawn_worker(settings, redis.url, latency_ms=10)
    a, b = (f"http://127.0.0.1:{port}" for port in ports)
    try:
        await asyncio.gather(
            *(wait_ready(base, web) for base, web in zip((a, b), webs, strict=True))
        )
        async with httpx.AsyncClient(base_url=b, timeout=15) as via_b:
            user = await sign_up(via_b)
            async with subscribed(a, user) as pokes:
                tree = await make_course(user.id)
                body = push_body(
                    "b", mutation("c", 1, "bookmarkTopic", {"topicId": str(tree.topic_ids[0])})
                )
                assert (await raw(via_b, user.token, "/sync/push", body)).status_code == 200
                scope = scopes.user_scope(user.id)
                assert await pokes.next() == {scope: await version_of(scope)}

                job_id, course_id = await generate(via_b, user.token, subjects=2, topics=2)
                course_scope = scopes.course_scope(course_id)
                await _wait_for(lambda: _succeeded(job_id))
                await pokes.until(course_scope, await version_of(course_scope))
        assert worker.poll() is None
    finally:
        stop(*webs, worker)
        redis.kill()


async def _succeeded(job_id: str) -> bool:
    return (await GenerationJob.get(id=job_id)).status is JobStatus.SUCCEEDED


async def _wait_for(check: Callable[[], Awaitable[bool]], limit: float = 60) -> None:
    async with asyncio.timeout(limit):
        while not await check():
            await asyncio.sleep(0.1)


async def test_only_committed_stamps_are_announced_once_per_transaction() -> None:
    seen: list[list[tuple[str, int]]] = []

    async def listen(changed: list[tuple[str, int]]) -> None:
        seen.append(changed)

    stop_listening = scopes.on_commit(listen)
    kept, dropped = scopes.user_scope(uuid.uuid4()), scopes.user_scope(uuid.uuid4())
    try:
        async with scopes.transaction():
            first = await scopes.stamp(kept, put=[("note", "n1", {"body": "1"})])
            with contextlib.suppress(LookupError):
                async with scopes.transaction():  # a savepoint that rolls back
                    await scopes.stamp(dropped, put=[("note", "n3", {"body": "3"})])
                    raise LookupError
            # One transaction, one increment: the second stamp of the scope shares the version.
            assert await scopes.stamp(kept, put=[("note", "n2", {"body": "2"})]) == first
        assert seen == [[(kept, first)]]
        assert await version_of(kept) == first
        assert {e.version for e in await SyncEntry.filter(scope=kept)} == {first}
        assert not await SyncEntry.filter(scope=dropped).exists()

        with pytest.raises(LookupError):
            async with scopes.transaction():
                await scopes.stamp(kept, delete=[("note", "n1")])
                raise LookupError
        assert seen == [[(kept, first)]]  # rolled back: nothing to announce
        assert await version_of(kept) == first
        with pytest.raises(RuntimeError):
            await scopes.stamp(kept, delete=[("note", "n1")])  # outside a transaction
    finally:
        stop_listening()
