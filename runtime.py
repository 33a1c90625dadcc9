"""Builds the adapters each way to run needs, for the web app and the worker alike.

Embedded (no REDIS_URL): an in-process event log and job runner in the web process.
Production (REDIS_URL): a Redis Streams event log and job queue; `worker` processes run jobs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ai.routed_writer import build_writer
from ai.writer import CourseWriter
from generation.jobs import JobQueue
from generation.redis_queue import RedisJobQueue, ensure_groups
from generation.runner import InProcessJobRunner
from redis_connection import RedisClient, connect_redis
from services.rate_limits import RateLimits
from settings import Settings
from subscriptions.progress_log import InProcessProgressLog, ProgressLog
from subscriptions.redis_progress_log import RedisProgressLog


@dataclass
class Runtime:
    settings: Settings
    events: ProgressLog
    jobs: JobQueue
    writer: CourseWriter
    rate_limits: RateLimits
    redis: RedisClient | None = None


@asynccontextmanager
async def web_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """What a web process needs; in embedded mode it also runs the jobs itself."""
    if settings.redis_url:
        client = connect_redis(settings.redis_url)
        writer = build_writer(settings, client)
        try:
            await ensure_groups(client)
            yield Runtime(
                settings=settings,
                events=RedisProgressLog(client),
                jobs=RedisJobQueue(client),
                writer=writer,
                rate_limits=RateLimits(settings.redis_url),
                redis=client,
            )
        finally:
            await writer.aclose()
            await client.aclose()
        return
    events = InProcessProgressLog()
    writer = build_writer(settings)
    runner = InProcessJobRunner(settings, writer, events)
    await runner.start()
    try:
        yield Runtime(
            settings=settings,
            events=events,
            jobs=runner,
            writer=writer,
            rate_limits=RateLimits(),
        )
    finally:
        await runner.stop()
        await writer.aclose()
        await events.close()
