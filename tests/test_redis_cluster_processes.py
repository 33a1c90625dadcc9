"""The service on a Redis Cluster end to end: a real web process and a real worker process with
REDIS_URL=redis+cluster://… (a private 3-master cluster) and a database of their own. A user
signs up, asks for a course written by a (fake) OpenAI-compatible model, follows it over SSE to
`completed`, hits the generation rate limit, and runs an APQ persisted query; afterwards the
cluster holds every family of keys (jobs, progress, rate limits, APQ, the model's breaker,
budget and cache) and the budget's reservations are settled. Runs in both suite runs: the
cluster is private to the test, and so is the database (a new PostgreSQL database in the
PostgreSQL run, a new SQLite file otherwise)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from redis_connection import connect_redis
from settings import Environment, Settings
from tests.conftest import POSTGRES_URL, _create_postgres_database, _drop_postgres_database
from tests.fake_openai import endpoint, router_config, running
from tests.servers import PrivateRedisCluster
from tests.support import gql, sign_up, spawn_worker
from tests.test_live_support import (
    GENERATE,
    SSEMessage,
    assert_contiguous,
    free_port,
    read_sse,
    spawn_web,
    stop,
    wait_ready,
)
from tests.test_redis_cluster import _start_cluster


@pytest.fixture
def cluster() -> Iterator[PrivateRedisCluster]:
    servers = _start_cluster()
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
async def fresh_settings(settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings for processes on a database nobody else uses (the web process migrates it):
    the test process's own worker, on another Redis, could otherwise re-queue their jobs."""
    created: str | None = None
    if POSTGRES_URL:
        created, url = await _create_postgres_database(POSTGRES_URL)
    else:
        url = f"sqlite://{tmp_path / 'cluster.sqlite3'}"
    try:
        yield Settings(
            COURSEGEN_ENV=Environment.TEST,
            COURSEGEN_DATA_DIR=tmp_path,
            DATABASE_URL=url,
            SECRET_KEY=settings.secret_key,
        )
    finally:
        if created and POSTGRES_URL:
            await _drop_postgres_database(POSTGRES_URL, created)


async def _follow(base: str, token: str, job_id: str) -> list[SSEMessage]:
    messages: list[SSEMessage] = []
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        http.stream(
            "GET", f"/events/jobs/{job_id}", headers={"authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status_code == 200
        async for message in read_sse(response):
            messages.append(message)
    return messages


async def test_web_and_worker_processes_run_on_a_redis_cluster(
    cluster: PrivateRedisCluster, fresh_settings: Settings, tmp_path: Path
) -> None:
    namespace = f"c{uuid.uuid4().hex[:8]}"
    async with running() as (fake, model_url):
        models = router_config(
            [endpoint("a", model_url)], budgets={"default": {"daily_usd": "5"}}
        ).model_dump_json()
        common = {
            "REDIS_NAMESPACE": namespace,
            "COURSEGEN_MODELS": models,
            "GENERATION_RATE_FREE": "1/hour",
        }
        port = free_port()
        web = spawn_web(
            fresh_settings,
            port,
            redis_url=cluster.url,
            extra={**common, "COURSEGEN_AUTO_MIGRATE": "true"},
            data_dir=tmp_path,
            log_file=tmp_path / "web.log",
        )
        base = f"http://127.0.0.1:{port}"
        worker = None
        try:
            await wait_ready(base, web)  # migrated: now the worker may start
            worker = spawn_worker(
                fresh_settings, cluster.url, latency_ms=0, extra=common, log_file=tmp_path / "w.log"
            )
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                user = await sign_up(http)
                variables = {"input": {"topic": "Graphs", "subjectCount": 2, "topicsPerSubject": 2}}
                body = await gql(http, GENERATE, variables, token=user.token)
                result = body["data"]["generateCourse"]
                assert result["__typename"] == "GenerateCourseSuccess", body
                sse = await asyncio.wait_for(_follow(base, user.token, result["job"]["id"]), 60)
                events = [json.loads(m.data) for m in sse if m.data and m.event is None]
                assert_contiguous([e["seq"] for e in events])
                assert events[-1]["type"] == "completed", events[-1]

                # The rate limit (1/hour for the free tier), counted in the cluster.
                again = await gql(http, GENERATE, variables, token=user.token)
                assert again["data"]["generateCourse"]["code"] == "RATE_LIMITED", again

                # APQ: unknown hash, then registered with its document, then by hash alone.
                document = "query CourseCount { courses { totalCount } }"
                sha = hashlib.sha256(document.encode()).hexdigest()
                persisted = {"persistedQuery": {"version": 1, "sha256Hash": sha}}
                headers = {"authorization": f"Bearer {user.token}"}
                miss = await http.post("/graphql", json={"extensions": persisted}, headers=headers)
                assert miss.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
                for body_ in (
                    {"query": document, "extensions": persisted},
                    {"extensions": persisted},
                ):
                    hit = await http.post("/graphql", json=body_, headers=headers)
                    assert hit.json() == {"data": {"courses": {"totalCount": 1}}}, hit.text
            assert worker.poll() is None
        finally:
            stop(web, *([worker] if worker else []))
        assert fake.hits["a"] >= 1 + 4  # the outline and each topic went to the model

    inspector: Any = connect_redis(cluster.url)
    try:
        keys = sorted([key.decode() async for key in inspector.scan_iter(match=f"{namespace}:*")])
        for family in ("jobs", "progress", "limits", "apq", "ai:budget", "ai:breaker", "ai:cache"):
            assert any(key.startswith(f"{namespace}:{family}:") for key in keys), (family, keys)
        # Every reservation was settled: nothing held, the day's spend recorded.
        budget = f"{namespace}:ai:budget:{{{user.id}}}"
        assert int(await inspector.get(f"{budget}:reserved") or 0) == 0
        assert await inspector.zcard(f"{budget}:open") == 0
        today = datetime.now(UTC).strftime("%Y%m%d")
        assert int(await inspector.get(f"{budget}:d:{today}") or 0) > 0
        # Spread over more than one node: the run really crossed slots. (All three is up to
        # where a handful of hash tags happen to hash: not something to assert.)
        assert len({inspector.get_node_from_key(key).name for key in keys}) >= 2
    finally:
        await inspector.aclose()
    logs = (tmp_path / "web.log").read_text() + (tmp_path / "w.log").read_text()
    for trouble in ("CROSSSLOT", "MOVED", "Traceback", "non local key"):
        assert trouble not in logs, logs[-3000:]
