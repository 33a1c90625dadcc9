"""Test set-up: one database per run (SQLite, or PostgreSQL when COURSEGEN_TEST_DATABASE_URL is
set), migrations applied, every table emptied after each test, and the app over ASGI.

`scripts/test` runs the suite twice: on SQLite with in-process adapters, and on PostgreSQL with
Redis. With COURSEGEN_TEST_REQUIRE_SERVICES=1 (CI), a missing PostgreSQL or Redis fails the run.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
from starlette.applications import Starlette
from tortoise import connections

from app import create_app
from generation.redis_queue import RedisJobWorker
from models import db
from settings import Environment, Settings

# The AI router tests' fixtures (fake OpenAI server, writer builders).
pytest_plugins = ["tests.ai_support"]

POSTGRES_URL = os.environ.get("COURSEGEN_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("COURSEGEN_TEST_REDIS_URL")

TABLES = [
    "bookmarks",
    "notes",
    "topic_progress",
    # After the jobs: a job's end locks its row, then adds to the usage ledger; TRUNCATE takes
    # its locks in this order, so the other order could deadlock with a job still finishing.
    "generation_jobs",
    "model_usage",
    "topics",
    "subjects",
    "course_members",
    "courses",
    "refresh_tokens",
    "auth_sessions",
    "users",
]


def pytest_report_header() -> str:
    backend = "PostgreSQL" if POSTGRES_URL else "SQLite"
    return f"coursegen: database {backend}; redis {'on' if REDIS_URL else 'off (in-process)'}"


async def _create_postgres_database(base_url: str) -> tuple[str, str]:
    parts = urlsplit(base_url)
    name = f"coursegen_test_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base_url.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, urlunsplit(parts._replace(path=f"/{name}"))


async def _drop_postgres_database(base_url: str, name: str) -> None:
    admin = await asyncpg.connect(base_url.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def settings(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Settings]:
    data_dir: Path = tmp_path_factory.mktemp("data")
    created: str | None = None
    if POSTGRES_URL:
        created, url = await _create_postgres_database(POSTGRES_URL)
    else:
        url = f"sqlite://{data_dir / 'test.sqlite3'}"
    if REDIS_URL:
        client = redis.from_url(REDIS_URL)
        try:
            assert await client.ping()
            # Queues and logs of earlier runs name jobs of databases that are gone.
            for pattern in ("coursegen:jobs*", "coursegen:progress:*"):
                async for key in client.scan_iter(match=pattern):
                    await client.delete(key)
        finally:
            await client.aclose()
    test_settings = Settings(
        COURSEGEN_ENV=Environment.TEST,
        COURSEGEN_DATA_DIR=data_dir,
        DATABASE_URL=url,
        REDIS_URL=REDIS_URL,
        SECRET_KEY="test-secret-key-that-is-long-enough-0123456789",
        COURSEGEN_ARGON2_PROFILE="CHEAPEST",
    )
    await db.apply_migrations(test_settings)
    try:
        yield test_settings
    finally:
        if created and POSTGRES_URL:
            await _drop_postgres_database(POSTGRES_URL, created)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    """The app with its lifespan running: database connected, jobs being worked.

    With Redis, a `RedisJobWorker` runs beside it in this process (the code a `worker`
    process runs), so jobs go through the real Redis Streams queue; `app.state.job_worker` is
    whichever runs the jobs.
    """
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        runtime = application.state.runtime
        if runtime.redis is None:
            application.state.job_worker = runtime.jobs
            yield application
            return
        start_redis_worker(application, settings)
        try:
            yield application
        finally:
            application.state.job_worker.stop()
            await asyncio.wait_for(application.state.job_worker_task, timeout=10)


def start_redis_worker(application: Starlette, settings: Settings) -> None:
    runtime = application.state.runtime
    worker = RedisJobWorker(runtime.redis, settings, runtime.writer, runtime.events)
    application.state.job_worker = worker
    application.state.job_worker_task = asyncio.create_task(worker.run())


@pytest.fixture(autouse=True)
async def _empty_tables(settings: Settings, app: Starlette) -> AsyncIterator[None]:
    yield
    connection = connections.get("default")
    if settings.uses_sqlite:
        for table in TABLES:
            await connection.execute_query(f"DELETE FROM {table}")  # noqa: S608 -- fixed names
    else:
        for attempt in range(3):
            try:
                await connection.execute_query(f"TRUNCATE {', '.join(TABLES)} CASCADE")
                return
            except asyncpg.exceptions.DeadlockDetectedError:
                # A background job of the test finishing as it ends may still deadlock with
                # the TRUNCATE; PostgreSQL cancels one of the two, and it is tried again.
                if attempt == 2:
                    raise


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
