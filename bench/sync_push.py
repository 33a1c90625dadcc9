"""Sync bench on PostgreSQL: push throughput (batches of 1, 100, 1,000), 50 devices pushing at
once, and an initial pull of 10,000 rows.

    PYTHONPATH=. .venv/bin/python bench/sync_push.py [postgres://postgres@127.0.0.1:5432/postgres]

Each push is one transaction per client (sync/push.py), so the batch size is what amortizes the
per-transaction work (client row, scope locks, stored results).

Creates and drops a database of its own; runs the app in-process (httpx over ASGI, no network
stack), so the figures are server + database cost.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app import create_app
from models import Subject, Topic, db
from services.ranks import rank_after
from settings import Environment, Settings
from tests.support import make_course, sign_up


def _mutations(client_id: str, start: int, count: int, topics: list[str]) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return [
        {
            "clientId": client_id,
            "id": start + n,
            "name": "completeTopic" if n % 2 == 0 else "bookmarkTopic",
            "args": {"topicId": topics[n % len(topics)]},
            "hlc": f"{now}-{n}-{client_id}",
        }
        for n in range(count)
    ]


async def main(base: str) -> None:
    logging.disable(logging.INFO)
    name = f"coursegen_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base.replace("postgres://", "postgresql://", 1))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    data = Path(tempfile.mkdtemp())
    settings = Settings(
        COURSEGEN_ENV=Environment.TEST,
        COURSEGEN_DATA_DIR=data,
        DATABASE_URL=base.rsplit("/", 1)[0] + f"/{name}",
        SECRET_KEY="bench-secret-key-that-is-long-enough-0123456789",
        COURSEGEN_ARGON2_PROFILE="CHEAPEST",
        db_pool_max=20,
    )
    try:
        await db.apply_migrations(settings)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://b", timeout=600
            ) as c:
                await run(c)
    finally:
        admin = await asyncpg.connect(base.replace("postgres://", "postgresql://", 1))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def run(c: httpx.AsyncClient) -> None:
    user = await sign_up(c)
    headers = {"authorization": f"Bearer {user.token}"}
    tree = await make_course(user.id, subjects=4, topics=25)
    topics = [str(t) for t in tree.topic_ids]

    async def push(group: str, mutations: list[dict[str, Any]]) -> None:
        body = {"protocolVersion": 1, "clientGroupId": group, "mutations": mutations}
        response = await c.post("/sync/push", json=body, headers=headers)
        assert response.status_code == 200, response.text
        assert all(r["status"] == "APPLIED" for r in response.json()["results"])

    print("push throughput (one client, sequential pushes)")
    for size, total in ((1, 300), (100, 2000), (1000, 3000)):
        group, client, next_id = uuid.uuid4().hex, "c", 1
        started = time.perf_counter()
        while next_id <= total:
            await push(group, _mutations(client, next_id, size, topics))
            next_id += size
        elapsed = time.perf_counter() - started
        print(f"  batch {size:>5}: {total / elapsed:8.0f} mutations/s ({total} in {elapsed:.2f} s)")

    print("50 devices pushing at once (20 mutations each)")
    started = time.perf_counter()
    await asyncio.gather(
        *(push(uuid.uuid4().hex, _mutations("c", 1, 20, topics)) for _ in range(50))
    )
    elapsed = time.perf_counter() - started
    print(f"  {1000 / elapsed:8.0f} mutations/s (1000 in {elapsed:.2f} s)")

    print("initial pull of 10,000 rows")
    big = await make_course(user.id, subjects=0)
    subject = await Subject.create(course_id=big.course_id, rank=rank_after(None), title="S")
    rank = None
    rows = []
    for n in range(10_000 - 2):
        rank = rank_after(rank)
        rows.append(
            Topic(
                id=uuid.uuid4(),
                subject_id=subject.id,
                course_id=big.course_id,
                rank=rank,
                title=f"T{n}",
                content="x" * 200,
            )
        )
    await Topic.bulk_create(rows, batch_size=1000)
    for limit in (1000, 500):
        group, cookie, pages, count = uuid.uuid4().hex, None, 0, 0
        started = time.perf_counter()
        while True:
            body = {"protocolVersion": 1, "clientGroupId": group, "cookie": cookie, "limit": limit}
            page = (await c.post("/sync/pull", json=body, headers=headers)).json()
            pages += 1
            count += len(page["patches"])
            cookie = page["cookie"]
            if not page["hasMore"]:
                break
        elapsed = time.perf_counter() - started
        print(
            f"  limit {limit}: {count} rows in {pages} pages, {elapsed:.2f} s,"
            f" {count / elapsed:8.0f} rows/s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "database",
        nargs="?",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server's URL; a database of the bench's own is made and dropped there",
    )
    asyncio.run(main(parser.parse_args().database))
