"""Helpers and fixtures of the live-progress tests (tests/test_live_*.py); no tests of its own.

- `live_server`: the session's app served by a real uvicorn on loopback, in this process and
  event loop (streams need a real socket; httpx's ASGI transport buffers whole responses).
- `job_row` makes a job straight in the database (no worker touches it) whose log a test then
  writes itself; `generate` asks for a real course through the API.
- `read_sse` parses an event stream as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from ai.offline_writer import OfflineCourseWriter
from models import Course, CourseStatus, GenerationJob, JobStatus
from settings import Settings
from subscriptions.events import ProgressEvent
from subscriptions.live import LiveProgress
from tests import support
from tests.servers import free_port as free_port  # re-exported for the live tests
from tests.support import gql

ROOT = Path(__file__).resolve().parent.parent
REDIS_RUN = bool(os.environ.get("COURSEGEN_TEST_REDIS_URL"))

SUBSCRIPTION = """
subscription($jobId: ID!, $after: Int) {
  generationProgress(jobId: $jobId, after: $after) {
    seq type jobId progress stage message courseId at data
  }
}
"""
GENERATE = """
mutation($input: GenerateCourseInput!) {
  generateCourse(input: $input) {
    __typename ... on GenerateCourseSuccess { job { id } course { id } } ... on UserError { code }
  }
}
"""
STREAM_TOKEN = """
mutation($jobId: ID!) {
  streamToken(jobId: $jobId) {
    __typename ... on StreamTokenSuccess { token expiresIn url } ... on UserError { code message }
  }
}
"""


class _InProcessServer(uvicorn.Server):
    """uvicorn without its signal handlers (this is pytest's process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture(scope="session")
async def live_server(app: Starlette) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1, ws_ping_interval=None
    )
    server = _InProcessServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


@pytest.fixture
async def http(live_server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server, timeout=15) as client:
        yield client


@pytest.fixture
def slow_writer(app: Starlette) -> Iterator[None]:
    """The app's jobs take ~50 ms a model call for one test: long enough to follow live."""
    worker = app.state.job_worker
    original = worker.writer
    worker.writer = OfflineCourseWriter(latency_seconds=0.05)
    try:
        yield
    finally:
        worker.writer = original


def live_of(app: Starlette) -> LiveProgress:
    live: LiveProgress = app.state.live
    return live


@dataclass
class Job:
    id: uuid.UUID
    course_id: uuid.UUID


async def job_row(
    owner: support.TestUser | uuid.UUID,
    status: JobStatus = JobStatus.RUNNING,
    *,
    finished_ago: float | None = None,
    error_code: str | None = None,
) -> Job:
    """A job (and its course) in the database only: nothing runs it; the test writes its log."""
    owner_id = owner.id if isinstance(owner, support.TestUser) else owner
    course = await Course.create(owner_id=owner_id, title="Live", status=CourseStatus.GENERATING)
    finished_at = (
        datetime.now(UTC) - timedelta(seconds=finished_ago) if finished_ago is not None else None
    )
    job = await GenerationJob.create(
        course_id=course.id,
        requester_id=owner_id,
        status=status,
        progress=1.0 if status is JobStatus.SUCCEEDED else 0.4,
        error_code=error_code,
        error_message="It broke." if error_code else None,
        finished_at=finished_at,
    )
    return Job(job.id, course.id)


async def append(app: Starlette, job: Job, type: str, **fields: Any) -> ProgressEvent:
    fields.setdefault("progress", 0.5)
    event: ProgressEvent = await app.state.runtime.events.append(
        job.id, type, course_id=job.course_id, **fields
    )
    return event


async def append_run(app: Starlette, job: Job, count: int, terminal: str | None = None) -> None:
    for index in range(count):
        await append(app, job, "topic_done", message=f"{index + 1} of {count}")
    if terminal:
        await append(app, job, terminal, progress=1.0)


async def generate(
    client: httpx.AsyncClient, token: str, subjects: int = 2, topics: int = 3
) -> tuple[str, str]:
    body = await gql(
        client,
        GENERATE,
        {"input": {"topic": "Live SQL", "subjectCount": subjects, "topicsPerSubject": topics}},
        token=token,
    )
    result = body["data"]["generateCourse"]
    assert result["__typename"] == "GenerateCourseSuccess", result
    return result["job"]["id"], result["course"]["id"]


async def stream_token(client: httpx.AsyncClient, token: str, job_id: str) -> dict[str, Any]:
    body = await gql(client, STREAM_TOKEN, {"jobId": job_id}, token=token)
    return dict(body["data"]["streamToken"])


@dataclass
class SSEMessage:
    event: str | None = None
    id: str | None = None
    data: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


async def read_sse(response: httpx.Response) -> AsyncIterator[SSEMessage]:
    """SSE messages as they arrive; comment-only blocks come as messages with no data."""
    message = SSEMessage()
    has_data = False
    async for line in response.aiter_lines():
        if line == "":
            if has_data or message.comments or message.retry is not None or message.event:
                yield message
            message, has_data = SSEMessage(), False
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            message.comments.append(value)
        elif name == "data":
            message.data = f"{message.data}\n{value}" if has_data else value
            has_data = True
        elif name == "id":
            message.id = value
        elif name == "event":
            message.event = value
        elif name == "retry":
            message.retry = int(value)


def assert_contiguous(seqs: list[int], first: int = 1) -> None:
    assert seqs == list(range(first, first + len(seqs))), seqs


def spawn_web(
    settings: Settings,
    port: int,
    *,
    redis_url: str | None = None,
    extra: dict[str, str] | None = None,
    data_dir: Path | None = None,
    log_file: Path | None = None,
    via_manage: bool = False,
) -> subprocess.Popen[bytes]:
    """A real web process: `uvicorn app:create_app --factory` on loopback (or, `via_manage`,
    the Procfile's `manage.py serve`, at its own log level). Its log goes to a
    pipe (read by `wait_ready` if it dies) or, for long or noisy runs, to `log_file`: nobody
    reads the pipe meanwhile, and a full pipe blocks the server's event loop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSEGEN_")}
    env.pop("REDIS_URL", None)
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=settings.resolved_database_url,
        SECRET_KEY=str(settings.secret_key),
        COURSEGEN_ENV="test",
        COURSEGEN_AUTO_MIGRATE="false",
        COURSEGEN_SEED_DEMO="false",
        COURSEGEN_DATA_DIR=str(data_dir or settings.data_dir),
        LIVE_DRAIN_SECONDS="0.2",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra or {})
    stderr: Any = log_file.open("ab") if log_file is not None else subprocess.PIPE
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        "5",
        "--log-level",
        "warning",
    ]
    if via_manage:
        command = [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    if log_file is not None:
        stderr.close()  # the child has its own descriptor
    return process


async def wait_ready(base: str, process: subprocess.Popen[bytes], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise AssertionError(f"web process exited: {stderr[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/health/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{base} did not become ready")


def stop(*processes: subprocess.Popen[bytes]) -> None:
    """SIGTERM to all, then wait for each (killed after 15 s)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
