"""Live progress across real processes on loopback: graceful shutdown on SIGTERM, a subscriber
on one web process following a job worked by a worker process, and Redis restarting while
events stream (the last two in the PostgreSQL + Redis run)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from redis_connection import connect_redis
from settings import Settings
from subscriptions.redis_progress_log import RedisProgressLog
from tests.servers import PrivateRedis
from tests.support import gql, sign_up, spawn_worker
from tests.test_live_support import (
    REDIS_RUN,
    SUBSCRIPTION,
    Job,
    SSEMessage,
    assert_contiguous,
    free_port,
    generate,
    job_row,
    read_sse,
    spawn_web,
    stop,
    wait_ready,
)

needs_redis = pytest.mark.skipif(not REDIS_RUN, reason="runs in the PostgreSQL + Redis run")


async def _sse(base: str, token: str, job_id: str, sink: list[SSEMessage]) -> None:
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream(
            "GET", f"/events/jobs/{job_id}", headers={"authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status_code == 200
        async for message in read_sse(response):
            sink.append(message)


async def _ws(base: str, token: str, job_id: str, sink: list[dict[str, Any]]) -> tuple[int, str]:
    """Follows over graphql-transport-ws; returns how the socket ended (1000 after complete)."""
    url = base.replace("http", "ws", 1) + "/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await socket.send(json.dumps(init))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        subscribe = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": SUBSCRIPTION, "variables": {"jobId": job_id}},
        }
        await socket.send(json.dumps(subscribe))
        try:
            while True:
                message = json.loads(await socket.recv())
                sink.append(message)
                if message["type"] in ("complete", "error"):
                    return 1000, "complete"
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code, closed.rcvd.reason


def _seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [
        m["payload"]["data"]["generationProgress"]["seq"] for m in messages if m["type"] == "next"
    ]


def _sse_seqs(messages: list[SSEMessage]) -> list[int]:
    return [json.loads(m.data)["seq"] for m in messages if m.data and m.event is None]


@pytest.fixture
def web_port() -> int:
    return free_port()


async def test_sigterm_drains_live_connections_and_exits_in_time(
    settings: Settings, client: httpx.AsyncClient, tmp_path: Path, web_port: int
) -> None:
    drain = 1.5
    process = spawn_web(
        settings,
        web_port,
        redis_url=settings.redis_url,
        extra={"LIVE_DRAIN_SECONDS": str(drain)},
        data_dir=tmp_path,
    )
    base = f"http://127.0.0.1:{web_port}"
    try:
        await wait_ready(base, process)
        user = await sign_up(client)
        job = await job_row(user)
        sse: list[SSEMessage] = []
        ws: list[dict[str, Any]] = []
        sse_task = asyncio.create_task(_sse(base, user.token, str(job.id), sse))
        ws_task = asyncio.create_task(_ws(base, user.token, str(job.id), ws))
        await asyncio.sleep(0.5)  # both are following

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient(base_url=base, timeout=2) as probe:
            for _ in range(20):
                ready = await probe.get("/health/ready")
                if ready.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            assert ready.status_code == 503 and ready.json()["draining"] is True
            # New live connections are refused: an SSE stream only says "reconnect".
            late = await probe.get(
                f"/events/jobs/{job.id}", headers={"authorization": f"Bearer {user.token}"}
            )
            assert late.status_code == 200 and "retry:" in late.text and "data:" not in late.text
            assert (
                await probe.put(
                    "/graphql/stream", headers={"authorization": f"Bearer {user.token}"}
                )
            ).status_code == 503

        # The WebSocket is closed with 1012, the SSE stream ends (clients reconnect elsewhere).
        assert await asyncio.wait_for(ws_task, timeout=3) == (
            1012,
            "The server is restarting; reconnect to resume.",
        )
        await asyncio.wait_for(sse_task, timeout=3)
        close = [m for m in sse if m.event == "close"]
        assert json.loads(close[0].data)["reason"] == "restart"
        assert time.monotonic() - started < drain + 0.5

        await asyncio.to_thread(process.wait, drain + 5)
        assert time.monotonic() - started < drain + 3
        # uvicorn re-raises the SIGTERM it handled once shut down: a clean exit by that signal.
        assert process.returncode in (0, -signal.SIGTERM)
    finally:
        stop(process)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if not REDIS_RUN or not PrivateRedis.available():
        pytest.skip("needs redis-server (PostgreSQL + Redis run)")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()


@needs_redis
async def test_a_subscriber_on_one_process_follows_a_job_worked_by_another(
    settings: Settings, tmp_path: Path, private_redis: PrivateRedis
) -> None:
    # Web processes A and B and a worker process share PostgreSQL and a Redis of their own
    # (so the test process's own worker cannot take the job).
    ports = free_port(), free_port()
    webs = [
        spawn_web(settings, port, redis_url=private_redis.url, data_dir=tmp_path) for port in ports
    ]
    worker = spawn_worker(settings, private_redis.url, latency_ms=40)
    a, b = (f"http://127.0.0.1:{port}" for port in ports)
    try:
        await asyncio.gather(
            *(wait_ready(base, web) for base, web in zip((a, b), webs, strict=True))
        )
        async with httpx.AsyncClient(base_url=b, timeout=10) as via_b:
            user = await sign_up(via_b)
            job_id, _ = await generate(via_b, user.token, subjects=3, topics=3)
        sse: list[SSEMessage] = []
        ws: list[dict[str, Any]] = []
        await asyncio.wait_for(
            asyncio.gather(_sse(a, user.token, job_id, sse), _ws(a, user.token, job_id, ws)),
            timeout=40,
        )
        for seqs in (_sse_seqs(sse), _seqs(ws)):
            assert_contiguous(seqs)
            assert len(seqs) == 1 + 1 + 1 + 1 + 1 + 9 + 9 + 1 + 1  # queued … completed
        assert json.loads([m for m in sse if m.data][-1].data)["type"] == "completed"
        assert worker.poll() is None  # the worker process did the work and is still up
    finally:
        stop(*webs, worker)


@needs_redis
async def test_two_deployments_share_one_redis_under_their_namespaces(
    settings: Settings, tmp_path: Path, private_redis: PrivateRedis
) -> None:
    # Deployment A (a web process and a worker) and deployment B (a web process, no worker) on
    # one Redis: A's job is worked and followed live within A; B's job is never taken by A's
    # worker; every key and channel either wrote starts with its own namespace.
    first, second = (f"t{uuid.uuid4().hex[:8]}" for _ in range(2))
    ports = free_port(), free_port()
    webs = [
        spawn_web(
            settings,
            port,
            redis_url=private_redis.url,
            extra={"REDIS_NAMESPACE": namespace},
            data_dir=tmp_path,
        )
        for port, namespace in zip(ports, (first, second), strict=True)
    ]
    worker = spawn_worker(
        settings, private_redis.url, latency_ms=10, extra={"REDIS_NAMESPACE": first}
    )
    a, b = (f"http://127.0.0.1:{port}" for port in ports)
    inspector = connect_redis(private_redis.url)
    channels: list[str] = []
    pubsub = inspector.pubsub()
    await pubsub.psubscribe("*")

    async def record() -> None:
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                channels.append(message["channel"].decode())

    recorder = asyncio.create_task(record())
    try:
        await asyncio.gather(
            *(wait_ready(base, web) for base, web in zip((a, b), webs, strict=True))
        )
        async with (
            httpx.AsyncClient(base_url=a, timeout=10) as via_a,
            httpx.AsyncClient(base_url=b, timeout=10) as via_b,
        ):
            other = await sign_up(via_b)
            stranded, _ = await generate(via_b, other.token, subjects=1, topics=1)
            user = await sign_up(via_a)
            job_id, _ = await generate(via_a, user.token, subjects=2, topics=2)
            sse: list[SSEMessage] = []
            await asyncio.wait_for(_sse(a, user.token, job_id, sse), timeout=40)
            assert json.loads([m for m in sse if m.data][-1].data)["type"] == "completed"
            status = await gql(
                via_b,
                "query($id: ID!) { generationJob(id: $id) { status } }",
                {"id": stranded},
                token=other.token,
            )
            assert status["data"]["generationJob"]["status"] == "QUEUED"
        keys = [key.decode() async for key in inspector.scan_iter(match="*")]
        namespaces = {key.split(":", 1)[0] for key in keys}
        assert namespaces == {first, second}, sorted(keys)
        for family in ("jobs", "progress", "limits"):
            assert any(key.startswith(f"{first}:{family}:") for key in keys), (family, keys)
        assert any(key.startswith(f"{second}:jobs:") for key in keys), keys
        assert channels and {c.split(":", 1)[0] for c in channels} <= {first, second}, channels
    finally:
        recorder.cancel()
        await pubsub.aclose()
        await inspector.aclose()
        stop(*webs, worker)


@needs_redis
async def test_redis_restarting_mid_stream_loses_and_repeats_nothing(
    settings: Settings, client: httpx.AsyncClient, tmp_path: Path, private_redis: PrivateRedis
) -> None:
    # Long polls: only the broker's own resubscription can bring events back quickly.
    web_port = free_port()
    web = spawn_web(
        settings,
        web_port,
        redis_url=private_redis.url,
        extra={"LIVE_LOG_POLL_SECONDS": "60"},
        data_dir=tmp_path,
    )
    base = f"http://127.0.0.1:{web_port}"
    writer_client = connect_redis(private_redis.url)
    log = RedisProgressLog(writer_client)
    try:
        await wait_ready(base, web)
        user = await sign_up(client)
        job: Job = await job_row(user)
        sse: list[SSEMessage] = []
        ws: list[dict[str, Any]] = []
        followers = [
            asyncio.create_task(_sse(base, user.token, str(job.id), sse)),
            asyncio.create_task(_ws(base, user.token, str(job.id), ws)),
        ]
        await asyncio.sleep(0.5)

        async def produce(count: int) -> None:
            for index in range(count):
                await log.append(
                    job.id, "topic_done", progress=0.5, course_id=job.course_id, message=str(index)
                )
                await asyncio.sleep(0.02)

        await produce(10)
        writer = asyncio.create_task(produce(40))  # keeps appending through the restart
        await asyncio.sleep(0.2)
        private_redis.kill()
        await asyncio.sleep(1.0)
        private_redis.start()
        await asyncio.wait_for(writer, timeout=30)
        restarted = time.monotonic()
        await log.append(job.id, "completed", progress=1.0, course_id=job.course_id)
        await asyncio.wait_for(asyncio.gather(*followers), timeout=15)
        assert time.monotonic() - restarted < 10  # not waiting for a 60 s poll
        assert _sse_seqs(sse) == list(range(1, 52))
        assert _seqs(ws) == list(range(1, 52))
    finally:
        await writer_client.aclose()
        stop(web)
