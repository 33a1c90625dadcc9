"""Read replicas (PostgreSQL run only): a private primary and a streaming replica made by
`pg_basebackup -R`, and two real web processes with DATABASE_REPLICA_URLS: `patient` (max lag
60 s) and `strict` (max lag 1 s). With the replica's replay paused:

- a user who has not written reads the replica's stale state: the dashboard (normal executor,
  then the fast path), a course page and a sync pull;
- a user who just wrote (a mutation, a sync push) reads its own writes;
- `strict` takes the replica out of rotation (too far behind) and reads the primary, while
  `patient` still reads the replica;

and with the replica stopped, reads go on on the primary without an error. The same reads
and writes behind PgBouncer in transaction mode (DATABASE_POOLER=transaction).

Proof of where a read went is the data: while replay is paused, the replica and the primary
disagree, and the test changes the primary behind the service's back (plain SQL, no mark).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from models import db
from settings import Environment, Settings
from tests import support
from tests.servers import PrivatePgBouncer, PrivatePrimary, PrivateReplica
from tests.support import sign_up
from tests.test_fast_path import COURSE_PAGE, DASHBOARD
from tests.test_live_support import free_port, spawn_web, stop, wait_ready

PG_RUN = bool(os.environ.get("COURSEGEN_TEST_DATABASE_URL"))

CREATE = """
mutation($title: String!) {
  createCourse(input: {title: $title}) {
    __typename ... on CreateCourseSuccess { course { id version } }
  }
}
"""
UPDATE = """
mutation($id: ID!, $version: Int!, $title: String!) {
  updateCourse(id: $id, input: {title: $title}, expectedVersion: $version) {
    __typename ... on UpdateCourseSuccess { course { title version } }
  }
}
"""


def _dsn(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


@dataclass
class Cluster:
    primary: PrivatePrimary
    replica: PrivateReplica
    settings: Settings


@pytest.fixture
async def cluster(settings: Settings) -> AsyncIterator[Cluster]:
    if not PG_RUN:
        pytest.skip("runs in the PostgreSQL + Redis run")
    if not PrivateReplica.available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries (initdb, pg_basebackup) are missing")
        pytest.skip("needs PostgreSQL server binaries (initdb, pg_basebackup)")
    primary = PrivatePrimary()
    replica = PrivateReplica(primary)
    try:
        await asyncio.to_thread(primary.start)
        cluster_settings = Settings(
            COURSEGEN_ENV=Environment.TEST,
            DATABASE_URL=primary.url,
            SECRET_KEY="replica-secret-key-that-is-long-enough-0123456789",
            COURSEGEN_ARGON2_PROFILE="CHEAPEST",
        )
        # Before the base backup: the replica starts with the schema.
        await db.apply_migrations(cluster_settings)
        await asyncio.to_thread(replica.start)
        yield Cluster(primary, replica, cluster_settings)
    finally:
        await asyncio.to_thread(replica.close)
        await asyncio.to_thread(primary.close)


class Web:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def gql(
        self, user: support.TestUser, query: str, variables: dict[str, Any] | None = None
    ) -> Any:
        r = await self.http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"authorization": f"Bearer {user.token}"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert "errors" not in body, body
        return body["data"]

    async def titles(self, user: support.TestUser) -> list[str]:
        data = await self.gql(user, DASHBOARD)
        return sorted(e["node"]["title"] for e in data["courses"]["edges"])

    async def pull(self, user: support.TestUser, group: str, cookie: str | None) -> dict[str, Any]:
        body = {"protocolVersion": 1, "clientGroupId": group, "cookie": cookie, "limit": 1000}
        r = await self.http.post(
            "/sync/pull", json=body, headers={"authorization": f"Bearer {user.token}"}
        )
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    async def metric(self, name: str, **labels: str) -> float:
        text = (await self.http.get("/metrics")).text
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if wanted else "")
        found = re.search(rf"^{pattern} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0


async def _until(what: str, check: Callable[[], Awaitable[bool]], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {limit} s: {what}")
        await asyncio.sleep(0.05)


async def _caught_up(primary: asyncpg.Connection, replica: asyncpg.Connection) -> bool:
    position = await primary.fetchval("SELECT pg_current_wal_insert_lsn()")
    return bool(await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", position))


@dataclass
class Scene:
    """Two users, set up while the replica follows; then the replica's replay is paused and
    the reader's course deleted on the primary behind the service's back."""

    reader: support.TestUser
    writer: support.TestUser
    reader_course: str
    writer_course: dict[str, Any]
    reader_cookie: str
    writer_cookie: str


async def _set_the_scene(
    webs: list[Web], primary: asyncpg.Connection, replica: asyncpg.Connection
) -> Scene:
    web = webs[0]
    reader, writer = await sign_up(web.http), await sign_up(web.http)
    made = await web.gql(reader, CREATE, {"title": "Reader's course"})
    reader_course = made["createCourse"]["course"]["id"]
    made = await web.gql(writer, CREATE, {"title": "Writer's course"})
    writer_course = made["createCourse"]["course"]
    # First pulls (scopes back-filled: writes), for cookies to pull on from.
    reader_cookie = (await web.pull(reader, "reader-group", None))["cookie"]
    writer_cookie = (await web.pull(writer, "writer-group", None))["cookie"]

    # Every process reads the replica (caught up, marks replayed) before it is paused.
    await _until("the replica caught up", lambda: _caught_up(primary, replica))
    for each in webs:
        served = await each.metric("coursegen_db_routed_reads_total", target="replica")

        async def on_replica(web: Web = each, before: float = served) -> bool:
            await web.titles(reader)
            return await web.metric("coursegen_db_routed_reads_total", target="replica") > before

        await _until("a read served by the replica", on_replica)
    await replica.execute("SELECT pg_wal_replay_pause()")
    # No read-your-writes mark for this one: the replica, paused, still has the course.
    await primary.execute(
        "UPDATE courses SET deleted_at = now() WHERE id = $1", uuid.UUID(reader_course)
    )
    return Scene(reader, writer, reader_course, writer_course, reader_cookie, writer_cookie)


async def _reader_reads_the_replica(web: Web, scene: Scene) -> None:
    for _ in range(3):  # learned by the normal executor, then from the fast path
        assert await web.titles(scene.reader) == ["Reader's course"]
    assert await web.metric("coursegen_graphql_fast_path_total", outcome="served") >= 1
    page = await web.gql(scene.reader, COURSE_PAGE, {"id": scene.reader_course})
    assert page["course"]["title"] == "Reader's course"
    pulled = await web.pull(scene.reader, "reader-group", scene.reader_cookie)
    assert not any(p["op"] == "DROP_SCOPE" for p in pulled["patches"]), pulled


async def _writer_reads_its_writes(web: Web, scene: Scene) -> None:
    """A mutation, then the dashboard and course page; a sync push, then a pull."""
    writer, course = scene.writer, scene.writer_course
    renamed = await web.gql(
        writer, UPDATE, {"id": course["id"], "version": course["version"], "title": "New"}
    )
    assert renamed["updateCourse"]["course"]["title"] == "New"
    assert await web.titles(writer) == ["New"]
    page = await web.gql(writer, COURSE_PAGE, {"id": course["id"]})
    assert page["course"]["title"] == "New"
    push = {
        "protocolVersion": 1,
        "clientGroupId": "writer-group",
        "mutations": [
            {
                "clientId": "writer-client",
                "id": 1,
                "name": "renameCourse",
                "args": {"courseId": course["id"], "title": "Newer"},
                "hlc": f"{int(time.time() * 1000)}-0-writer-client",
            }
        ],
    }
    r = await web.http.post(
        "/sync/push", json=push, headers={"authorization": f"Bearer {writer.token}"}
    )
    assert r.json()["results"][0]["status"] == "APPLIED", r.text
    pulled = await web.pull(writer, "writer-group", scene.writer_cookie)
    titles = [p["data"]["title"] for p in pulled["patches"] if p["type"] == "course"]
    assert titles == ["Newer"], pulled
    assert pulled["lastMutationIds"] == {"writer-client": 1}
    # ... and the reader still reads the replica.
    assert await web.titles(scene.reader) == ["Reader's course"]


async def test_reads_go_to_the_replica_writers_read_their_writes_and_lag_or_loss_falls_back(
    cluster: Cluster, settings: Settings, tmp_path: Path
) -> None:
    replica_name = f"127.0.0.1:{cluster.replica.port}"
    common = {
        "DATABASE_REPLICA_URLS": cluster.replica.url,
        "DATABASE_REPLICA_CHECK_SECONDS": "0.2",
        "REDIS_NAMESPACE": f"replicas-{uuid.uuid4().hex[:8]}",
    }
    ports = free_port(), free_port()
    processes = [
        spawn_web(
            cluster.settings,
            port,
            redis_url=settings.redis_url,
            extra={**common, "DATABASE_REPLICA_MAX_LAG_SECONDS": lag},
            data_dir=tmp_path,
            log_file=tmp_path / f"web-{port}.log",
        )
        for port, lag in zip(ports, ("60", "1"), strict=True)
    ]
    primary = await asyncpg.connect(_dsn(cluster.primary.url))
    replica = await asyncpg.connect(_dsn(cluster.replica.url))
    try:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        await asyncio.gather(*(wait_ready(b, p) for b, p in zip(bases, processes, strict=True)))
        async with (
            httpx.AsyncClient(base_url=bases[0], timeout=30) as patient_http,
            httpx.AsyncClient(base_url=bases[1], timeout=30) as strict_http,
        ):
            patient, strict = Web(patient_http), Web(strict_http)
            scene = await _set_the_scene([patient, strict], primary, replica)
            reader, writer = scene.reader, scene.writer
            await _reader_reads_the_replica(patient, scene)
            await _writer_reads_its_writes(patient, scene)

            # `strict` (max lag 1 s) takes the paused replica out of rotation: its reads go to
            # the primary, where the course is gone; `patient` (60 s) keeps reading the replica.
            async def out_of_rotation() -> bool:
                value = await strict.metric(
                    "coursegen_db_replica_in_rotation", replica=replica_name
                )
                return value == 0

            await _until("the lagging replica out of rotation", out_of_rotation)
            assert await strict.titles(reader) == []
            pulled = await strict.pull(reader, "reader-group", scene.reader_cookie)
            assert any(p["op"] == "DROP_SCOPE" for p in pulled["patches"]), pulled
            assert await patient.titles(reader) == ["Reader's course"]

            # Replay resumed: back in rotation, and the replica has caught up.
            await replica.execute("SELECT pg_wal_replay_resume()")

            async def in_rotation() -> bool:
                value = await strict.metric(
                    "coursegen_db_replica_in_rotation", replica=replica_name
                )
                return value == 1

            await _until("the replica back in rotation", in_rotation)
            await _until("the replica caught up", lambda: _caught_up(primary, replica))
            assert await patient.titles(reader) == []

            # The replica stopped: reads go on, on the primary, with no error.
            await replica.close()
            await asyncio.to_thread(cluster.replica.stop)
            for web in (patient, strict):
                assert await web.titles(reader) == []
                assert await web.titles(writer) == ["Newer"]
                page = await web.gql(writer, COURSE_PAGE, {"id": scene.writer_course["id"]})
                assert page["course"]["title"] == "Newer"
                pulled = await web.pull(writer, "writer-group", scene.writer_cookie)
                assert pulled["lastMutationIds"] == {"writer-client": 1}
            for web in (patient, strict):
                assert (
                    await web.metric("coursegen_db_replica_in_rotation", replica=replica_name) == 0
                )
    finally:
        stop(*processes)
        await primary.close()
        if not replica.is_closed():
            await replica.close()


async def test_replicas_behind_pgbouncer_in_transaction_mode(
    cluster: Cluster, tmp_path: Path
) -> None:
    """DATABASE_POOLER=transaction applies to the replicas too (no prepared statement outlives
    a statement): the primary and the replica each behind a PgBouncer of their own."""
    if PrivatePgBouncer.binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pgbouncer is not installed (.ci/apt-packages lists it)")
        pytest.skip("pgbouncer is not installed (Debian package pgbouncer)")
    poolers = [
        PrivatePgBouncer("127.0.0.1", server.port, pool_size=2)
        for server in (cluster.primary, cluster.replica)
    ]
    port = free_port()
    process = None
    primary = await asyncpg.connect(_dsn(cluster.primary.url))
    replica = await asyncpg.connect(_dsn(cluster.replica.url))
    try:
        for pooler in poolers:
            await asyncio.to_thread(pooler.start)
        process = spawn_web(
            cluster.settings,
            port,
            extra={
                "DATABASE_URL": poolers[0].url("postgres"),
                "DATABASE_REPLICA_URLS": poolers[1].url("postgres"),
                "DATABASE_POOLER": "transaction",
                "DATABASE_REPLICA_CHECK_SECONDS": "0.2",
                "DATABASE_REPLICA_MAX_LAG_SECONDS": "60",
            },
            data_dir=tmp_path,
            log_file=tmp_path / "web.log",
        )
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, process)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            web = Web(http)
            scene = await _set_the_scene([web], primary, replica)
            await _reader_reads_the_replica(web, scene)
            await _writer_reads_its_writes(web, scene)
            await replica.execute("SELECT pg_wal_replay_resume()")
    finally:
        if process is not None:
            stop(process)
        for pooler in poolers:
            await asyncio.to_thread(pooler.close)
        await primary.close()
        await replica.close()
    log = (tmp_path / "web.log").read_text()
    assert "prepared statement" not in log and "InvalidSQLStatementName" not in log
