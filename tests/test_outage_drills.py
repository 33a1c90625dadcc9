"""Outage drills with real processes: Redis killed and restarted under a web process and a
worker process; a private PostgreSQL restarted and stopped under a steady load of queries;
a sync push while the database is down. Every server here is private (tests/servers.py): the
machine's shared PostgreSQL and Redis are never touched.

What must hold: what needs the missing server answers TEMPORARILY_UNAVAILABLE (GraphQL result
or error code; HTTP 503 with Retry-After), everything else keeps working, no answer shows an
internal detail, and everything recovers by itself once the server is back, with no process
restarted. Figures (time to recover, outcomes) come from bench/outage_drills.py, not from here.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from websockets.asyncio.client import connect

from models import db
from services.availability import is_unavailable, unavailable
from services.errors import DomainError, ErrorCode
from services.rate_limits import RateLimits
from settings import Environment, Settings
from tests.outage_support import QueryLoad, find_leak
from tests.servers import PrivatePostgres, PrivateRedis
from tests.support import SIGN_UP, spawn_worker
from tests.test_live_support import (
    GENERATE,
    REDIS_RUN,
    SUBSCRIPTION,
    free_port,
    read_sse,
    spawn_web,
    stop,
    wait_ready,
)

# The PostgreSQL drill runs in the PostgreSQL + Redis run (it starts a server of its own).
PG_RUN = bool(os.environ.get("COURSEGEN_TEST_DATABASE_URL"))

ME = "query { me { id email } courses(first: 20) { totalCount } }"
CREATE = """
mutation($title: String!) {
  createCourse(input: {title: $title}) {
    __typename ... on CreateCourseSuccess { course { id version } } ... on UserError { code }
  }
}
"""
UPDATE = """
mutation($id: ID!, $version: Int!) {
  updateCourse(id: $id, input: {title: "Edited while Redis is down"}, expectedVersion: $version) {
    __typename ... on UpdateCourseSuccess { course { title } } ... on UserError { code }
  }
}
"""
LOG_IN = """
mutation($email: String!, $password: String!) {
  logIn(input: {email: $email, password: $password}) { __typename ... on UserError { code } }
}
"""
GENERATE_WITH_KEY = """
mutation($input: GenerateCourseInput!, $key: String) {
  generateCourse(input: $input, idempotencyKey: $key) {
    __typename
    ... on GenerateCourseSuccess { job { id } }
    ... on UserError { code message }
  }
}
"""
SYNC_PUSH = """
mutation($input: SyncPushInput!) {
  syncPush(input: $input) {
    __typename
    ... on SyncPushSuccess { results { clientId id status } lastMutationIds }
    ... on UserError { code }
  }
}
"""


SYNC_POKE = "subscription { syncPoke { scopes { scope version } } }"


class Api:
    """A user's view of one web process."""

    def __init__(self, client: httpx.AsyncClient, token: str = "") -> None:
        self.client = client
        self.token = token

    async def post(self, query: str, **variables: Any) -> httpx.Response:
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {self.token}"} if self.token else {},
        )
        leak = find_leak(response.text)
        assert leak is None, f"{leak!r} in {response.text[:500]}"
        return response

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.post(query, **variables)
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, response.text
        return dict(body["data"])

    async def sign_up(self) -> tuple[str, str]:
        email = f"drill-{uuid.uuid4().hex[:8]}@example.com"
        password = "correct horse battery staple"
        result = (
            await self.data(
                SIGN_UP,
                input={"email": email, "password": password, "displayName": "Drill"},
            )
        )["signUp"]
        self.token = result["accessToken"]
        return email, password


def _gen_input() -> dict[str, Any]:
    return {"topic": "Outage drills", "subjectCount": 1, "topicsPerSubject": 2}


async def _follow_sse(base: str, token: str, job_id: str) -> list[dict[str, Any]]:
    """The job's events over the plain SSE stream, until the stream ends."""
    events: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream(
            "GET", f"/events/jobs/{job_id}", headers={"authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status_code == 200
        async for message in read_sse(response):
            if message.data and message.event is None:
                events.append(json.loads(message.data))
    return events


async def _subscribe_ws(
    base: str, token: str, job_id: str, query: str = SUBSCRIPTION
) -> list[dict[str, Any]]:
    """A subscription (generationProgress by default) over graphql-transport-ws until
    `complete` or `error`."""
    url = base.replace("http", "ws", 1) + "/graphql"
    messages: list[dict[str, Any]] = []
    variables = {"jobId": job_id} if query is SUBSCRIPTION else {}
    async with connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await socket.send(json.dumps(init))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        subscribe = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": query, "variables": variables},
        }
        await socket.send(json.dumps(subscribe))
        while True:
            raw = await asyncio.wait_for(socket.recv(), timeout=30)
            leak = find_leak(str(raw))
            assert leak is None, f"{leak!r} in {raw!r}"
            message = json.loads(raw)
            messages.append(message)
            if message["type"] in ("complete", "error"):
                return messages


async def _eventually(check: Any, limit: float = 30.0) -> Any:
    """The first truthy result of `check()`, polled for at most `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.1)


# --- Redis down -------------------------------------------------------------------------


@pytest.fixture
def drill_redis() -> Iterator[PrivateRedis]:
    if not REDIS_RUN or not PrivateRedis.available():
        pytest.skip("needs redis-server (PostgreSQL + Redis run)")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_redis_down_only_what_needs_it_is_unavailable_and_all_recovers(
    settings: Settings, tmp_path: Path, drill_redis: PrivateRedis
) -> None:
    port = free_port()
    web = spawn_web(
        settings, port, redis_url=drill_redis.url, data_dir=tmp_path, log_file=tmp_path / "web.log"
    )
    worker = spawn_worker(settings, drill_redis.url, latency_ms=10)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, web)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            api = Api(http)
            email, password = await api.sign_up()
            created = (await api.data(CREATE, title="Before the outage"))["createCourse"]
            course = created["course"]
            job = (await api.data(GENERATE, input=_gen_input()))["generateCourse"]["job"]["id"]
            assert (await _follow_sse(base, api.token, job))[-1]["type"] == "completed"

            drill_redis.kill()

            async def redis_reported_down() -> bool:
                ready = await http.get("/health/ready")
                return ready.status_code == 503 and ready.json()["checks"]["redis"] == "unavailable"

            await _eventually(redis_reported_down)
            assert (await http.get("/health/ready")).json()["checks"]["database"] == "ok"

            # Reads, log-in, sign-up and course edits keep working (rate limits count in-process).
            assert (await api.data(ME))["me"]["email"] == email
            login = await api.data(LOG_IN, email=email, password=password)
            assert login["logIn"]["__typename"] == "AuthSuccess"
            edited = await api.data(UPDATE, id=course["id"], version=course["version"])
            assert edited["updateCourse"]["course"]["title"] == "Edited while Redis is down"
            assert (await Api(http).sign_up())[0]

            # What needs Redis says so, with a stable code, and leaves nothing behind.
            courses = (await api.data(ME))["courses"]["totalCount"]
            refused = await api.data(GENERATE_WITH_KEY, input=_gen_input(), key="drill-1")
            assert refused["generateCourse"]["__typename"] == "TemporarilyUnavailableError"
            assert refused["generateCourse"]["code"] == "TEMPORARILY_UNAVAILABLE"
            assert (await api.data(ME))["courses"]["totalCount"] == courses

            async def sse_refused() -> httpx.Response | None:
                async with http.stream(
                    "GET", f"/events/jobs/{job}", headers={"authorization": f"Bearer {api.token}"}
                ) as response:
                    if response.status_code != 503:
                        return None  # a stream opened: closed at once
                    await response.aread()
                    return response

            sse = await _eventually(sse_refused)
            assert sse.json()["code"] == "TEMPORARILY_UNAVAILABLE"
            assert int(sse.headers["retry-after"]) >= 1
            assert find_leak(sse.text) is None
            for subscription in (SUBSCRIPTION, SYNC_POKE):
                ws = await _subscribe_ws(base, api.token, job, subscription)
                assert ws[-1]["type"] == "error"
                assert ws[-1]["payload"][0]["extensions"]["code"] == "TEMPORARILY_UNAVAILABLE"

            # Redis back (empty: no streams, no consumer groups): no process is restarted.
            drill_redis.start()
            await _eventually(
                lambda: _ok(http.get("/health/ready")),
            )

            async def generation_accepted() -> str | None:
                result = (await api.data(GENERATE_WITH_KEY, input=_gen_input(), key="drill-2"))[
                    "generateCourse"
                ]
                return (
                    result["job"]["id"] if result["__typename"] == "GenerateCourseSuccess" else None
                )

            job_after = await _eventually(generation_accepted)
            # The live hub resubscribes by itself (its reconnect backs off up to 2 s)...
            await _eventually(lambda: _not_refused(sse_refused()))
            # ...and the worker took the job: it re-created its consumer group by itself.
            events = await _follow_sse(base, api.token, job_after)
            assert events[-1]["type"] == "completed"

            async def live_again() -> list[dict[str, Any]] | None:
                messages = await _subscribe_ws(base, api.token, job_after)
                return messages if messages[-1]["type"] == "complete" else None

            messages = await _eventually(live_again)
            assert messages[-2]["payload"]["data"]["generationProgress"]["type"] == "completed"
        assert web.poll() is None and worker.poll() is None
    finally:
        stop(web, worker)


async def _not_refused(check: Any) -> bool:
    return await check is None


async def _ok(request: Any) -> bool:
    response = await request
    return bool(response.status_code == 200)


# --- PostgreSQL restarted and stopped -----------------------------------------------------


@pytest.fixture
async def drill_postgres() -> AsyncIterator[PrivatePostgres]:
    if not PG_RUN or not PrivatePostgres.available():
        pytest.skip("needs PostgreSQL server binaries (PostgreSQL + Redis run)")
    server = PrivatePostgres()
    try:
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.close)


async def _lifecycle(pg: PrivatePostgres, action: str) -> None:
    await asyncio.to_thread(getattr(pg, action))


def _push_body(mutation_id: int, course_id: str) -> dict[str, Any]:
    return {
        "protocolVersion": 1,
        "clientGroupId": "drill-group",
        "mutations": [
            {
                "clientId": "drill-client",
                "id": mutation_id,
                "name": "createCourse",
                "args": {"courseId": course_id, "title": f"Offline course {mutation_id}"},
                "hlc": f"{int(time.time() * 1000)}-0-drill-client",
            }
        ],
    }


async def test_postgres_restart_and_stop_under_load_clear_errors_then_recovery(
    tmp_path: Path, drill_postgres: PrivatePostgres
) -> None:
    pg = drill_postgres
    pg_settings = Settings(
        COURSEGEN_ENV=Environment.TEST,
        DATABASE_URL=pg.url,
        SECRET_KEY="drill-secret-key-that-is-long-enough-0123456789",
        COURSEGEN_ARGON2_PROFILE="CHEAPEST",
    )
    await db.apply_migrations(pg_settings)
    port = free_port()
    web = spawn_web(
        pg_settings,
        port,
        data_dir=tmp_path,
        extra={"REQUEST_TIMEOUT_SECONDS": "5"},
        log_file=tmp_path / "web.log",
    )
    base = f"http://127.0.0.1:{port}"
    load: QueryLoad | None = None
    try:
        await wait_ready(base, web)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            api = Api(http)
            await api.sign_up()
            first = await http.post(
                "/sync/push",
                json=_push_body(1, str(uuid.uuid4())),
                headers={"authorization": f"Bearer {api.token}"},
            )
            assert first.json()["results"][0]["status"] == "APPLIED"
            courses_before = (await api.data(ME))["courses"]["totalCount"]

            load = QueryLoad(base, api.token, concurrency=3)
            load.start()
            await load.wait_for_ok_after(time.monotonic())

            await _lifecycle(pg, "restart")
            await load.wait_for_ok_after(time.monotonic())

            await _lifecycle(pg, "stop")
            stopped = time.monotonic()
            # Sync push with the database down: RETRY_LATER over REST and GraphQL.
            offline_id = str(uuid.uuid4())
            rest = await http.post(
                "/sync/push",
                json=_push_body(2, offline_id),
                headers={"authorization": f"Bearer {api.token}"},
            )
            assert rest.status_code == 503 and int(rest.headers["retry-after"]) >= 1
            assert rest.json()["error"]["code"] == "TEMPORARILY_UNAVAILABLE"
            assert [r["status"] for r in rest.json()["results"]] == ["RETRY_LATER"]
            assert find_leak(rest.text) is None
            graphql = (await api.data(SYNC_PUSH, input=_push_body(2, offline_id)))["syncPush"]
            assert [r["status"] for r in graphql["results"]] == ["RETRY_LATER"]
            assert graphql["lastMutationIds"] == {}  # confirms nothing
            # Everything else: a clear 503 with the stable code, no hang, no internals.
            down = await api.post(ME)
            assert down.status_code == 503 and int(down.headers["retry-after"]) >= 1
            assert {e["extensions"]["code"] for e in down.json()["errors"]} == {
                "TEMPORARILY_UNAVAILABLE"
            }
            create = await api.post(CREATE, title="During the outage")
            assert create.status_code == 503
            assert create.json()["errors"][0]["extensions"]["code"] == "TEMPORARILY_UNAVAILABLE"
            assert (await http.get("/health/ready")).status_code == 503
            await _eventually(lambda: _saw_outage(load, stopped))

            await _lifecycle(pg, "start")
            await load.wait_for_ok_after(time.monotonic())
            await load.stop()

            # Nothing of the refused push was applied or counted; the retry applies it once.
            pull = await http.post(
                "/sync/pull",
                json={"protocolVersion": 1, "clientGroupId": "drill-group"},
                headers={"authorization": f"Bearer {api.token}"},
            )
            assert pull.json()["lastMutationIds"] == {"drill-client": 1}
            assert (await api.data(ME))["courses"]["totalCount"] == courses_before
            for expected in ("APPLIED", "DUPLICATE"):
                retried = await http.post(
                    "/sync/push",
                    json=_push_body(2, offline_id),
                    headers={"authorization": f"Bearer {api.token}"},
                )
                assert retried.json()["results"][0]["status"] == expected
            assert (await api.data(ME))["courses"]["totalCount"] == courses_before + 1
            connection = await asyncpg.connect(pg.url.replace("postgres://", "postgresql://"))
            try:
                count = await connection.fetchval(
                    "SELECT count(*) FROM courses WHERE id = $1", uuid.UUID(offline_id)
                )
            finally:
                await connection.close()
            assert count == 1

        kinds = load.kinds()
        # Only successes and clear 503s: no masked error, no 504, no dropped connection.
        assert set(kinds) <= {"ok", "unavailable"}, kinds
        assert kinds["unavailable"] > 0
        for sample in load.samples:
            leak = find_leak(sample.body)
            assert leak is None, f"{leak!r} in {sample.body[:300]}"
        assert web.poll() is None  # recovered without a restart
    finally:
        if load is not None:
            await load.stop()
        stop(web)


async def _saw_outage(load: QueryLoad, since: float) -> bool:
    return load.kinds(since)["unavailable"] > 0


# --- Telling outages from bugs, and rate limits without their Redis (both runs) ------------


def _closed_port() -> int:
    return free_port()  # nothing listens there: a server that is down


async def test_errors_of_unreachable_servers_are_outages_and_bugs_are_not() -> None:
    port = _closed_port()
    with pytest.raises(OSError) as refused:
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=5)
    assert is_unavailable(refused.value)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2)
    try:
        with pytest.raises(RedisConnectionError) as down:
            await client.ping()
    finally:
        await client.aclose()
    assert is_unavailable(down.value)
    try:
        raise RuntimeError("wrapped") from down.value
    except RuntimeError as wrapped:
        assert is_unavailable(wrapped)  # the cause counts
    assert is_unavailable(unavailable())
    assert is_unavailable(asyncpg.exceptions.InterfaceError("connection is closed"))
    wrong_query = "the server expects 1 argument for this query, 2 were passed"
    assert not is_unavailable(asyncpg.exceptions.InterfaceError(wrong_query))
    assert not is_unavailable(ValueError("a bug"))
    assert not is_unavailable(FileNotFoundError(2, "No such file"))
    assert not is_unavailable(DomainError(ErrorCode.NOT_FOUND, "No course with that id."))


async def test_rate_limits_without_their_redis_count_in_process_or_refuse_clearly() -> None:
    limits = RateLimits(f"redis://127.0.0.1:{_closed_port()}/0")
    # The cost budget and log-in limits fall back to this process (and still limit).
    assert await limits.charge("cost-user", "100/minute", 40, "someone") == 60
    with pytest.raises(DomainError) as spent:
        await limits.charge("cost-user", "100/minute", 70, "someone")
    assert spent.value.code is ErrorCode.RATE_LIMITED
    for _ in range(2):
        await limits.hit_or_local("login-account", "2/minute", "a@example.com")
    with pytest.raises(DomainError) as limited:
        await limits.hit_or_local("login-account", "2/minute", "a@example.com")
    assert limited.value.code is ErrorCode.RATE_LIMITED
    # What `hit` guards needs the shared store (new generation jobs): a clear refusal.
    with pytest.raises(DomainError) as refused:
        await limits.hit("generate-course", "5/hour", "someone")
    assert refused.value.code is ErrorCode.TEMPORARILY_UNAVAILABLE
    assert refused.value.retry_after is not None
