"""Conformance with the standard JavaScript clients from npm, run by Node.js (tests/js):
`graphql-ws` (graphql-transport-ws), `graphql-sse` in distinct and single connection modes,
and `eventsource` (the browser's EventSource API) on the plain SSE stream."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from subscriptions.connections import RESTARTING
from tests.support import sign_up
from tests.test_live_support import (
    ROOT,
    append,
    append_run,
    assert_contiguous,
    generate,
    job_row,
    live_of,
    stream_token,
)
from tests.test_live_support import http as http
from tests.test_live_support import live_server as live_server
from tests.test_live_support import slow_writer as slow_writer

JS = ROOT / "tests" / "js"
CLIENTS = ["graphql-ws", "graphql-sse", "graphql-sse-single", "eventsource"]


@pytest.fixture(scope="session")
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    if not all((JS / "node_modules" / name).is_dir() for name in ("graphql-sse", "replicache")):
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300)
    return node


async def node_process(node: str, script: str, *args: str) -> asyncio.subprocess.Process:
    """`node tests/js/<script> <args>` with its stdin, stdout and stderr piped."""
    return await asyncio.create_subprocess_exec(
        node,
        str(JS / script),
        *args,
        cwd=JS,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


class NodeClient:
    """One `node live_client.mjs` run; its JSON lines as they arrive."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, node: str, config: dict[str, Any]) -> NodeClient:
        return cls(await node_process(node, "live_client.mjs", json.dumps(config)))

    async def until(self, check: Callable[[list[dict[str, Any]]], bool], limit: float = 20) -> None:
        assert self.process.stdout is not None

        async def read() -> None:
            while not check(self.lines):
                raw = await self.process.stdout.readline()  # type: ignore[union-attr]
                if not raw:
                    raise AssertionError(f"client ended early: {self.lines}")
                self.lines.append(json.loads(raw))

        await asyncio.wait_for(read(), timeout=limit)

    async def finish(self, limit: float = 20) -> int:
        await self.until(
            lambda lines: bool(lines) and lines[-1]["kind"] in ("done", "error"), limit
        )
        code = await asyncio.wait_for(self.process.wait(), timeout=limit)
        assert self.lines[-1]["kind"] == "done", (self.lines[-3:], await self._stderr())
        return code

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode()[-2000:]

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [line["event"] for line in self.lines if line["kind"] == "event"]


async def _config(
    client: str, base: str, http: httpx.AsyncClient, token: str, job_id: str
) -> dict[str, Any]:
    config: dict[str, Any] = {"client": client, "base": base, "token": token, "jobId": job_id}
    if client == "eventsource":
        config["streamUrl"] = (await stream_token(http, token, job_id))["url"]
    return config


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_generation_reaches_each_standard_client(
    node: str, http: httpx.AsyncClient, live_server: str, slow_writer: None, client: str
) -> None:
    user = await sign_up(http)
    job_id, course_id = await generate(http, user.token)
    runner = await NodeClient.start(
        node, await _config(client, live_server, http, user.token, job_id)
    )
    try:
        assert await runner.finish() == 0
    finally:
        runner.kill()
    events = runner.events
    assert_contiguous([e["seq"] for e in events])
    assert events[0]["type"] == "queued" and events[-1]["type"] == "completed"
    assert {e["courseId"] for e in events} == {course_id}
    assert set(events[0]) == {
        "seq",
        "type",
        "jobId",
        "progress",
        "stage",
        "message",
        "courseId",
        "at",
        "data",
    }


@pytest.mark.parametrize("client", CLIENTS)
async def test_each_client_reconnects_and_resumes_without_loss_or_repeat(
    node: str,
    app: Starlette,
    http: httpx.AsyncClient,
    live_server: str,
    client: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live = live_of(app)
    monkeypatch.setattr(live.settings, "live_sse_retry_ms", 100)
    user = await sign_up(http)
    job = await job_row(user)
    await append_run(app, job, 3)
    config = await _config(client, live_server, http, user.token, str(job.id))
    runner = await NodeClient.start(node, {**config, "resume": True})
    try:
        await runner.until(lambda lines: len([x for x in lines if x["kind"] == "event"]) >= 3)
        # The server restarts under the client (as on a deploy): 1012 on WebSocket, the end of
        # the stream on SSE. The client reconnects and resumes after the last `seq` it got.
        for connection in list(live.registry.connections.values()):
            if connection.user_id == user.id:
                connection.close(RESTARTING)
        await append_run(app, job, 3)
        await append(app, job, "completed", progress=1.0)
        assert await runner.finish() == 0
    finally:
        runner.kill()
    assert [e["seq"] for e in runner.events] == [1, 2, 3, 4, 5, 6, 7]
    assert len([line for line in runner.lines if line["kind"] == "connected"]) >= 2
    if client == "graphql-ws":
        assert {"kind": "closed", "code": 1012, "reason": RESTARTING.message} in runner.lines
    if client == "eventsource":
        closes = [line["data"] for line in runner.lines if line["kind"] == "close-event"]
        assert closes == [{"reason": "restart", "message": RESTARTING.message}]


async def test_the_graphql_sse_client_sees_errors_of_a_job_it_may_not_see(
    node: str, http: httpx.AsyncClient, live_server: str
) -> None:
    owner, stranger = await sign_up(http), await sign_up(http)
    job = await job_row(owner)
    config = {
        "client": "graphql-sse",
        "base": live_server,
        "token": stranger.token,
        "jobId": str(job.id),
        "path": "/graphql/stream",
    }
    runner = await NodeClient.start(node, config)
    try:
        assert await runner.finish() == 0
    finally:
        runner.kill()
    errors = next(line["errors"] for line in runner.lines if line["kind"] == "errors")
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"


def test_the_lock_file_pins_the_clients() -> None:
    lock = json.loads((JS / "package-lock.json").read_text())
    packages = lock["packages"]
    for name in ("graphql-ws", "graphql-sse", "ws", "eventsource", "graphql", "replicache"):
        assert f"node_modules/{name}" in packages
    assert Path(JS / "package.json").is_file()
