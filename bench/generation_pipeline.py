"""Generation pipeline benchmark: sequential vs parallel topics, and jobs/minute by workers.

    PYTHONPATH=. .venv/bin/python -m bench.generation_pipeline [--latency-ms 200]

Part 1 runs one 6 x 8 course through the real pipeline (claim, events, one-transaction write)
on a scratch PostgreSQL database, with a writer whose every call takes `--latency-ms`: once
with one topic at a time, once with the pipeline's default concurrency (settings), once with
all 48 at once. (One process talks to one kind of database: Tortoise caches its queries.)
Part 2 (needs PostgreSQL and Redis on loopback) starts 1, then 2 `manage.py worker`
processes on Redis Streams, queues `--jobs` courses of 6 x 8, and measures jobs per minute
until every one succeeded.

`--writer fake-openai` makes every call go through the AI router and the real `openai`
client to the fake OpenAI-compatible server of the tests, answering after `--latency-ms`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import redis.asyncio as redis

from ai.offline_writer import OfflineCourseWriter
from ai.routed_writer import build_writer
from ai.writer import CourseWriter
from bench.router_overhead import MODEL, fake_server
from generation.pipeline import run_job
from generation.redis_queue import RedisJobQueue, ensure_groups
from models import Course, CourseStatus, GenerationJob, JobStatus, User, db
from settings import Environment, Settings
from subscriptions.progress_log import InProcessProgressLog

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432"
SECRET = "bench-secret-key-0123456789-0123456789-abcdef"


async def _queue_job(owner: User, subjects: int, topics: int) -> uuid.UUID:
    course = await Course.create(owner_id=owner.id, title="Bench", status=CourseStatus.GENERATING)
    request = {
        # Unique per job: the router's response cache must not answer for the model.
        "topic": f"Distributed systems {uuid.uuid4().hex[:8]}",
        "audience": "engineers",
        "level": "intermediate",
        "language": "en",
        "subject_count": subjects,
        "topics_per_subject": topics,
        "notes": "",
    }
    job = await GenerationJob.create(course_id=course.id, requester_id=owner.id, request=request)
    return job.id


@asynccontextmanager
async def scratch_database(redis_url: str | None = None) -> AsyncIterator[Settings]:
    name = f"coursegen_bench_gen_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    settings = Settings(
        COURSEGEN_ENV=Environment.TEST,
        DATABASE_URL=f"{PG}/{name}",
        SECRET_KEY=SECRET,
        REDIS_URL=redis_url,
    )
    try:
        await db.apply_migrations(settings)
        await db.connect(settings)
        yield settings
    finally:
        await db.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def pipeline_wall_times(writer: CourseWriter, concurrency_levels: list[int]) -> None:
    async with scratch_database():
        owner = await User.create(email="b@example.com", password_hash="x", display_name="b")
        results: dict[int, float] = {}
        for level in concurrency_levels:
            job_id = await _queue_job(owner, 6, 8)
            started = time.perf_counter()
            await run_job(
                job_id,
                writer,
                InProcessProgressLog(),
                max_attempts=3,
                topic_concurrency=level,
                global_limit=asyncio.Semaphore(1000),
            )
            results[level] = time.perf_counter() - started
            job = await GenerationJob.get(id=job_id)
            assert job.status is JobStatus.SUCCEEDED, job.error_message
        base = results[concurrency_levels[0]]
        print("| topics in parallel | wall time (s) | speed-up |")
        print("|---|---|---|")
        for level, seconds in results.items():
            print(f"| {level} | {seconds:.2f} | {base / seconds:.1f}x |")


async def jobs_per_minute(workers: int, jobs: int, latency_ms: int, models: str | None) -> float:
    redis_url = "redis://127.0.0.1:6379/14"
    processes: list[subprocess.Popen[bytes]] = []
    async with scratch_database(redis_url) as settings:
        client = redis.from_url(redis_url)
        try:
            await client.flushdb()
            await ensure_groups(client)
            env = {k: v for k, v in os.environ.items() if not k.startswith("COURSEGEN_")}
            env.update(
                PYTHONPATH=str(ROOT),
                DATABASE_URL=settings.resolved_database_url,
                REDIS_URL=redis_url,
                SECRET_KEY=SECRET,
                COURSEGEN_ENV="production",
                COURSEGEN_OFFLINE_LATENCY_MS=str(latency_ms),
            )
            if models:
                env["COURSEGEN_MODELS"] = models
            processes = [
                subprocess.Popen(
                    [sys.executable, "manage.py", "worker"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(workers)
            ]
            await asyncio.sleep(2.0)  # workers connected and reading
            owner = await User.create(email="b@example.com", password_hash="x", display_name="b")
            ids = [await _queue_job(owner, 6, 8) for _ in range(jobs)]
            queue = RedisJobQueue(client)
            started = time.perf_counter()
            for job_id in ids:
                await queue.enqueue(job_id, "free")
            while await GenerationJob.filter(id__in=ids, status=JobStatus.SUCCEEDED).count() < jobs:
                failed = await GenerationJob.filter(id__in=ids, status=JobStatus.FAILED).count()
                assert failed == 0, "a benchmark job failed"
                await asyncio.sleep(0.05)
            return jobs / (time.perf_counter() - started) * 60
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=20)
            await client.aclose()


def models_json(url: str) -> str:
    """One model at the fake server, no budget limits (the bench is about throughput)."""
    model = {
        "name": MODEL,
        "model": MODEL,
        "base_url": url,
        "api_key": "bench",
        "price_input_per_mtok": 1,
        "price_output_per_mtok": 2,
        "context_window": 100_000,
        "capabilities": {"json_mode": True, "streaming": True},
    }
    return json.dumps({"models": [model], "policy": {"redis_prefix": "bench:gen"}})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--writer", choices=["offline", "fake-openai"], default="fake-openai")
    parser.add_argument("--skip-workers", action="store_true")
    args = parser.parse_args()
    settings = Settings(COURSEGEN_ENV=Environment.TEST, SECRET_KEY=SECRET)
    default = settings.generation_topic_concurrency
    with contextlib.ExitStack() as stack:
        models: str | None = None
        writer: CourseWriter
        if args.writer == "fake-openai":
            os.environ["FAKE_FULL_OUTLINES"] = "1"
            models = models_json(stack.enter_context(fake_server(args.latency_ms)))
            writer = build_writer(settings.model_copy(update={"models": models}))
            what = "AI router + openai client against the fake server"
        else:
            writer = OfflineCourseWriter(args.latency_ms / 1000)
            what = "offline writer with simulated latency"
        print(f"## one 6 x 8 course, every model call {args.latency_ms} ms ({what})\n")
        asyncio.run(pipeline_wall_times(writer, [1, default, 48]))
        if args.skip_workers:
            return
        print(f"\n## jobs per minute, {args.jobs} courses of 6 x 8, worker processes on Redis\n")
        print("| workers | jobs/min |")
        print("|---|---|")
        for workers in (1, 2):
            rate = asyncio.run(jobs_per_minute(workers, args.jobs, args.latency_ms, models))
            print(f"| {workers} | {rate:.0f} |")


if __name__ == "__main__":
    main()
