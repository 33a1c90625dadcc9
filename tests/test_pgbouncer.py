"""Behind PgBouncer in transaction pooling mode (PostgreSQL run only): a real web process with
DATABASE_POOLER=transaction serves the ORM, the dashboard's fast path, sync push and pull, many
requests at once over a few server connections; the timeouts reach the server through the
pooler's connect_query; and the default settings are refused by the pooler (why the setting
exists)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from settings import Settings
from tests.servers import PrivatePgBouncer
from tests.support import make_course, sign_up
from tests.test_fast_path import DASHBOARD
from tests.test_live_support import free_port, spawn_web, stop, wait_ready


@pytest.fixture
def bouncer(settings: Settings) -> Iterator[PrivatePgBouncer]:
    url = settings.resolved_database_url
    if not url.startswith("postgres"):
        pytest.skip("runs in the PostgreSQL + Redis run")
    if PrivatePgBouncer.binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pgbouncer is not installed (.ci/apt-packages lists it)")
        pytest.skip("pgbouncer is not installed (Debian package pgbouncer)")
    parts = urlsplit(url)
    pooler = PrivatePgBouncer(
        parts.hostname or "127.0.0.1", parts.port or 5432, statement_timeout_ms=4321, pool_size=3
    )
    pooler.start()
    try:
        yield pooler
    finally:
        pooler.close()


def _database(settings: Settings) -> str:
    return urlsplit(settings.resolved_database_url).path.lstrip("/")


async def test_the_service_runs_behind_pgbouncer_in_transaction_mode(
    settings: Settings,
    client: httpx.AsyncClient,
    bouncer: PrivatePgBouncer,
    tmp_path: Path,
) -> None:
    database = _database(settings)
    port = free_port()
    process = spawn_web(
        settings,
        port,
        extra={
            "DATABASE_URL": bouncer.url(database),
            "DATABASE_POOLER": "transaction",
            "DB_POOL_MAX": "10",  # more client connections than the pooler's 3 server ones
        },
        data_dir=tmp_path,
        log_file=tmp_path / "web.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, process)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            user = await sign_up(http)
            headers = {"authorization": f"Bearer {user.token}"}
            trees = [await make_course(user.id, subjects=2, topics=3) for _ in range(3)]
            topics = [str(t) for tree in trees for t in tree.topic_ids]

            async def dashboard() -> None:
                r = await http.post("/graphql", json={"query": DASHBOARD}, headers=headers)
                assert r.status_code == 200 and "errors" not in r.json(), r.text
                assert r.json()["data"]["courses"]["totalCount"] == 3

            async def push(n: int) -> None:
                mutations = [
                    {
                        "clientId": "c",
                        "id": k + 1,
                        "name": "completeTopic" if k % 2 else "bookmarkTopic",
                        "args": {"topicId": topics[(n + k) % len(topics)]},
                        "hlc": f"{int(time.time() * 1000)}-{k}-c",
                    }
                    for k in range(5)
                ]
                body = {"protocolVersion": 1, "clientGroupId": f"g{n}", "mutations": mutations}
                r = await http.post("/sync/push", json=body, headers=headers)
                assert r.status_code == 200, r.text
                assert {x["status"] for x in r.json()["results"]} == {"APPLIED"}

            async def pull(n: int) -> None:
                body = {"protocolVersion": 1, "clientGroupId": f"p{n}", "limit": 1000}
                r = await http.post("/sync/pull", json=body, headers=headers)
                assert r.status_code == 200, r.text
                assert len(r.json()["patches"]) >= 3 * (1 + 2 + 6)

            # Many at once over the pool's 3 server connections: every transaction may land
            # on another one, where a named prepared statement of the last would be missing.
            await asyncio.gather(
                *(dashboard() for _ in range(20)),
                *(push(n) for n in range(20)),
                *(pull(n) for n in range(10)),
            )
            await asyncio.gather(
                *(dashboard() for _ in range(10)), *(push(n) for n in range(20, 40))
            )
    finally:
        stop(process)
    log = (tmp_path / "web.log").read_text()
    assert "prepared statement" not in log and "InvalidSQLStatementName" not in log


async def test_timeouts_reach_the_server_through_the_pooler_and_startup_parameters_do_not(
    settings: Settings, bouncer: PrivatePgBouncer
) -> None:
    dsn = bouncer.url(_database(settings)).replace("postgres://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn, statement_cache_size=0)
    try:
        assert await connection.fetchval("SHOW statement_timeout") == "4321ms"
        with pytest.raises(asyncpg.QueryCanceledError):
            await connection.execute("SELECT pg_sleep(10)")
    finally:
        await connection.close()
    # What the service sends without DATABASE_POOLER=transaction: refused by the pooler.
    with pytest.raises(asyncpg.PostgresError, match="unsupported startup parameter"):
        await asyncpg.connect(dsn, server_settings={"statement_timeout": "5000"})
