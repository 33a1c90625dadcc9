"""PostgreSQL answering 2 s late (a TCP proxy in between, PostgreSQL run only): statements time
out client-side, the pool keeps turning, `/health/live` keeps answering, requests get a clear
TEMPORARILY_UNAVAILABLE with Retry-After (no SQL, no stack trace), and all is well again as
soon as the database is fast again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from settings import Settings
from tests.outage_support import classify, find_leak
from tests.slow_proxy import SlowProxy
from tests.support import sign_up
from tests.test_live_support import free_port, spawn_web, stop, wait_ready

QUERY = "query Load { me { id } courses(first: 5) { totalCount } }"


@pytest.fixture
def postgres_url(settings: Settings) -> str:
    url = settings.resolved_database_url
    if not url.startswith("postgres"):
        pytest.skip("runs in the PostgreSQL + Redis run")
    return url


async def test_a_slow_database_gets_clear_errors_and_a_live_service(
    settings: Settings, client: httpx.AsyncClient, postgres_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(postgres_url)
    proxy = SlowProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    through_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    port = free_port()
    process = spawn_web(
        settings,
        port,
        extra={
            "DATABASE_URL": through_proxy,
            "DB_COMMAND_TIMEOUT_SECONDS": "1",
            "DB_POOL_MAX": "4",
            "REQUEST_TIMEOUT_SECONDS": "8",
        },
        data_dir=tmp_path,
        log_file=tmp_path / "web.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, process)
        user = await sign_up(client)
        headers = {"authorization": f"Bearer {user.token}"}
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            fast = await http.post("/graphql", json={"query": QUERY}, headers=headers)
            assert classify(fast) == "ok", fast.text

            proxy.delay = 2.0
            live_answers: list[int] = []

            async def probe_live() -> None:
                async with httpx.AsyncClient(base_url=base, timeout=3) as probe:
                    for _ in range(15):
                        live_answers.append((await probe.get("/health/live")).status_code)
                        await asyncio.sleep(0.2)

            probing = asyncio.create_task(probe_live())
            # More concurrent requests than the pool has connections.
            slow = await asyncio.gather(
                *(http.post("/graphql", json={"query": QUERY}, headers=headers) for _ in range(12))
            )
            await probing
            kinds = [classify(response) for response in slow]
            # Clear, stable codes only: the statement's own timeout (503 TEMPORARILY_UNAVAILABLE
            # with Retry-After) or, for a request still waiting for a connection, the request
            # deadline (504 REQUEST_TIMEOUT). Never a masked error or a hang.
            detail = [(k, r.text[:200]) for k, r in zip(kinds, slow, strict=True)]
            assert set(kinds) <= {"unavailable", "timeout"}, detail
            assert "unavailable" in kinds, detail  # the statement timeouts fired
            for response in slow:
                assert find_leak(response.text) is None, response.text
            assert live_answers == [200] * 15  # the process kept answering throughout

            proxy.delay = 0.0
            # The pool was not exhausted: as soon as the database is fast, requests succeed.
            deadline = time.monotonic() + 20
            while True:
                response = await http.post("/graphql", json={"query": QUERY}, headers=headers)
                if classify(response) == "ok" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert classify(response) == "ok", response.text
            after = await asyncio.gather(
                *(http.post("/graphql", json={"query": QUERY}, headers=headers) for _ in range(12))
            )
            assert [classify(r) for r in after] == ["ok"] * 12
    finally:
        stop(process)
        await proxy.close()
