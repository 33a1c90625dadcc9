"""Production job queue with real worker processes on Redis Streams (PostgreSQL + Redis run)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from generation import redis_queue
from generation.redis_queue import (
    GROUP,
    RedisJobWorker,
    _stream,
    dead_stream,
    ensure_groups,
    replay_dead_letter,
)
from models import GenerationJob, JobStatus, Subject, Topic
from settings import Settings
from subscriptions.redis_progress_log import RedisProgressLog
from tests.conftest import start_redis_worker
from tests.support import gql, sign_up, spawn_worker

pytestmark = pytest.mark.skipif(
    not os.environ.get("COURSEGEN_TEST_REDIS_URL")
    or not os.environ.get("COURSEGEN_TEST_DATABASE_URL"),
    reason="runs in the PostgreSQL + Redis run of scripts/test",
)

ROOT = Path(__file__).resolve().parent.parent
GENERATE = """
mutation($input: GenerateCourseInput!) {
  generateCourse(input: $input) { ... on GenerateCourseSuccess { job { id } course { id } } }
}
"""


@pytest.fixture
async def paused_in_process_worker(app: Starlette, settings: Settings) -> AsyncIterator[None]:
    """Stop the test app's own worker so only the spawned processes take jobs."""
    worker: RedisJobWorker = app.state.job_worker
    worker.stop()
    await asyncio.wait_for(app.state.job_worker_task, timeout=10)
    yield
    start_redis_worker(app, settings)


async def _until(check: Callable[[], object], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await check():  # type: ignore[misc]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_redis_mode_is_what_runs(app: Starlette) -> None:
    assert app.state.runtime.redis is not None
    assert isinstance(app.state.runtime.events, RedisProgressLog)


async def test_killed_worker_has_its_job_finished_by_another(
    client: httpx.AsyncClient, app: Starlette, settings: Settings, paused_in_process_worker: None
) -> None:
    redis = app.state.runtime.redis
    workers = [
        spawn_worker(settings, str(settings.redis_url), latency_ms=150, workers=1) for _ in range(2)
    ]
    try:
        user = await sign_up(client)
        body = await gql(
            client,
            GENERATE,
            {"input": {"topic": "Distributed systems", "subjectCount": 3, "topicsPerSubject": 4}},
            token=user.token,
        )
        job_id = body["data"]["generateCourse"]["job"]["id"]
        course_id = body["data"]["generateCourse"]["course"]["id"]

        async def holder() -> str | None:
            """The consumer holding this job's entry (other tests may leave theirs pending)."""
            stream = _stream("free")
            for entry in await redis.xpending_range(stream, GROUP, min="-", max="+", count=100):
                for _, fields in await redis.xrange(
                    stream, min=entry["message_id"], max=entry["message_id"]
                ):
                    if fields[b"job"].decode() == job_id:
                        return str(entry["consumer"].decode())
            return None

        await _until(lambda: _running(job_id))
        await _until(holder)
        consumer = await holder()
        assert consumer is not None
        victim = next(w for w in workers if f"-{w.pid}-" in consumer)
        await asyncio.sleep(0.4)  # topics are being written
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

        seen_counts: set[int] = set()

        async def finished() -> bool:
            seen_counts.add(await Topic.filter(course_id=course_id).count())
            job = await GenerationJob.get(id=job_id)
            return job.status is JobStatus.SUCCEEDED

        await _until(finished, limit=40)
        job = await GenerationJob.get(id=job_id)
        assert job.attempts == 2
        assert await Subject.filter(course_id=course_id).count() == 3
        assert await Topic.filter(course_id=course_id).count() == 12
        assert seen_counts <= {0, 12}, f"a reader saw half a course: {seen_counts}"

        async def acknowledged() -> bool:
            return await holder() is None

        # The worker acknowledges its entry right after the job's commit: wait for it.
        await _until(acknowledged, limit=10)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=15)


async def _running(job_id: str) -> bool:
    job = await GenerationJob.get(id=job_id)
    return job.status is JobStatus.RUNNING


async def test_exhausted_job_is_dead_lettered_and_replays_once(
    client: httpx.AsyncClient, app: Starlette, settings: Settings
) -> None:
    redis = app.state.runtime.redis
    user = await sign_up(client)
    before = {entry[0] for entry in await redis.xrange(dead_stream())}
    # A job whose every attempt was lost (as repeated crashes leave it).
    body = await gql(
        client,
        GENERATE,
        {"input": {"topic": "Poison pill", "subjectCount": 1, "topicsPerSubject": 1}},
        token=user.token,
    )
    job_id = body["data"]["generateCourse"]["job"]["id"]
    await _until(lambda: _status(job_id, JobStatus.SUCCEEDED))
    await GenerationJob.filter(id=job_id).update(
        status=JobStatus.RUNNING, attempts=settings.generation_max_attempts
    )
    # Delivered as a takeover, as XAUTOCLAIM or a re-queue of a lost running job delivers it.
    await redis.xadd(_stream("free"), {"job": job_id, "takeover": "1"})
    await _until(lambda: _status(job_id, JobStatus.FAILED))
    job = await GenerationJob.get(id=job_id)
    assert job.error_code == "ATTEMPTS_EXHAUSTED"

    async def dead_entry() -> bytes | None:
        new = [e for e in await redis.xrange(dead_stream()) if e[0] not in before]
        return new[0][0] if new else None

    await _until(dead_entry)
    entry = (await dead_entry() or b"").decode()
    replays = await asyncio.gather(*(replay_dead_letter(redis, entry) for _ in range(5)))
    assert [r for r in replays if r is not None] == [uuid.UUID(job_id)]
    await _until(lambda: _status(job_id, JobStatus.SUCCEEDED))
    assert (await GenerationJob.get(id=job_id)).attempts == 1


async def _status(job_id: str, status: JobStatus) -> bool:
    job = await GenerationJob.get(id=job_id)
    return job.status is status


async def test_workers_take_jobs_by_tier_with_aging(
    app: Starlette,
    settings: Settings,
    paused_in_process_worker: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis = app.state.runtime.redis
    # Streams of their own: an entry id (its arrival time) must exceed every id a stream
    # ever held, and the shared streams have held newer ones.
    own = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(redis_queue, "_stream", lambda tier: f"{own}:{{tiers}}:{tier}")
    await ensure_groups(redis)
    now_ms = int(time.time() * 1000)
    ids = {name: uuid.uuid4() for name in ("old_free", "premium", "standard", "new_free")}
    # Entry ids carry arrival times: the free job has waited longer than any head start.
    await redis.xadd(
        redis_queue._stream("free"), {"job": str(ids["old_free"])}, id=f"{now_ms - 200_000}-0"
    )
    await redis.xadd(redis_queue._stream("free"), {"job": str(ids["new_free"])}, id=f"{now_ms}-0")
    await redis.xadd(
        redis_queue._stream("standard"), {"job": str(ids["standard"])}, id=f"{now_ms - 10}-0"
    )
    await redis.xadd(
        redis_queue._stream("premium"), {"job": str(ids["premium"])}, id=f"{now_ms - 5}-0"
    )
    worker = RedisJobWorker(redis, settings, app.state.runtime.writer, app.state.runtime.events)
    order = []
    for _ in range(4):
        taken = await worker._take()
        assert taken is not None
        stream, entry_id, job_id, _ = taken
        order.append(job_id)
        await redis.xack(stream, GROUP, entry_id)
        await redis.xdel(stream, entry_id)
    assert order == [ids["old_free"], ids["premium"], ids["standard"], ids["new_free"]]
    await redis.delete(*[redis_queue._stream(tier) for tier in ("premium", "standard", "free")])


async def test_a_run_that_crashes_unexpectedly_is_taken_over(
    client: httpx.AsyncClient,
    app: Starlette,
    settings: Settings,
    paused_in_process_worker: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run raises something no one expected (PostgreSQL down while claiming the job): the
    entry must not stay pending and renewed forever; it is taken over and the job finishes."""
    own = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(redis_queue, "_stream", lambda tier: f"{own}:{{tiers}}:{tier}")
    redis = app.state.runtime.redis
    await ensure_groups(redis)
    real_run_job = redis_queue.run_job
    crashes: list[uuid.UUID] = []

    async def crash_once(job_id: uuid.UUID, *args: object, **kwargs: object) -> None:
        if not crashes:
            crashes.append(job_id)
            raise ConnectionRefusedError("database unreachable")
        await real_run_job(job_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("generation.redis_queue.run_job", crash_once)
    quick = settings.model_copy(update={"generation_claim_idle_seconds": 0.5})
    runtime = app.state.runtime
    worker = RedisJobWorker(redis, quick, runtime.writer, runtime.events, concurrency=1)
    task = asyncio.create_task(worker.run())
    try:
        user = await sign_up(client)
        body = await gql(
            client,
            GENERATE,
            {"input": {"topic": "Crash once", "subjectCount": 1, "topicsPerSubject": 1}},
            token=user.token,
        )
        job_id = body["data"]["generateCourse"]["job"]["id"]
        await _until(lambda: _status(job_id, JobStatus.SUCCEEDED), limit=20)
        assert crashes == [uuid.UUID(job_id)]

        async def nothing_pending() -> bool:  # acknowledged just after the job's last write
            counts = [
                await redis.xpending(_stream(t), GROUP) for t in ("premium", "standard", "free")
            ]
            return all(count["pending"] == 0 for count in counts)

        await _until(nothing_pending, limit=10)
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=10)
        await redis.delete(*[_stream(tier) for tier in ("premium", "standard", "free")])
