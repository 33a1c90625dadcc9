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
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from tortoise import connections

from app import create_app
from models import Subject, Topic, db
from services import scopes
from services.ranks import rank_after
from settings import Environment, Settings
from tests.support import Tree, make_course, sign_up


class Device:
    """One device's queue of a realistic mix: completions, note edits on the version it last
    saw, bookmarks and course edits, over the user's courses (every mutation is APPLIED)."""

    def __init__(self, token: str, courses: list[Tree], notes: list[str]) -> None:
        self.headers = {"authorization": f"Bearer {token}"}
        self.group, self.client, self.next_id = uuid.uuid4().hex, "c", 1
        self.courses = [str(t.course_id) for t in courses]
        self.topics = [str(topic) for t in courses for topic in t.topic_ids]
        self.notes = {note: 1 for note in notes}
        self.counter = 0

    def batch(self, size: int) -> list[dict[str, Any]]:
        out = []
        wall = int(time.time() * 1000)
        for _ in range(size):
            n = self.next_id
            self.counter += 1
            kind = MIX[n % len(MIX)]
            m: dict[str, Any] = {
                "clientId": self.client,
                "id": n,
                "hlc": f"{wall}-{self.counter}-{self.group}",
            }
            topic = self.topics[n % len(self.topics)]
            if kind == "saveNote":
                note = list(self.notes)[n % len(self.notes)]
                m.update(name=kind, args={"noteId": note, "body": f"text {n}"})
                m["baseVersion"] = self.notes[note]
                self.notes[note] += 1
            elif kind in ("renameCourse", "updateCourseDetails"):
                course = self.courses[n % len(self.courses)]
                field = "title" if kind == "renameCourse" else "description"
                m.update(name=kind, args={"courseId": course, field: f"{field} {n}"})
            else:
                m.update(name=kind, args={"topicId": topic})
            out.append(m)
            self.next_id += 1
        return out


# 4 completions, 3 note edits, 2 bookmarks, 1 course edit in every 10 mutations.
MIX = [
    "completeTopic",
    "saveNote",
    "bookmarkTopic",
    "completeTopic",
    "renameCourse",
    "saveNote",
    "completeTopic",
    "bookmarkTopic",
    "saveNote",
    "completeTopic",
]


async def main(base: str, pull_only: bool = False, processes: int = 0) -> None:
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
                if processes:
                    await _served(c, settings, processes)
                else:
                    await run(c, base, pull_only)
    finally:
        admin = await asyncpg.connect(base.replace("postgres://", "postgresql://", 1))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _device(c: httpx.AsyncClient, courses: int = 3, notes: int = 30) -> Device:
    user = await sign_up(c)
    trees = [await make_course(user.id, subjects=4, topics=25) for _ in range(courses)]
    ids = [str(uuid.uuid4()) for _ in range(notes)]
    setup = Device(user.token, trees, [])
    creates = [
        {
            "clientId": "setup",
            "id": n + 1,
            "name": "createNote",
            "args": {"noteId": note, "topicId": setup.topics[n], "body": "first"},
            "hlc": f"{int(time.time() * 1000)}-{n}-setup",
        }
        for n, note in enumerate(ids)
    ]
    await _push(c, setup, creates)
    return Device(user.token, trees, ids)


async def _push(c: httpx.AsyncClient, d: Device, mutations: list[dict[str, Any]]) -> None:
    body = {"protocolVersion": 1, "clientGroupId": d.group, "mutations": mutations}
    response = await c.post("/sync/push", json=body, headers=d.headers)
    assert response.status_code == 200, response.text
    statuses = {r["status"] for r in response.json()["results"]}
    assert statuses == {"APPLIED"}, response.json()["results"][:3]


async def _floor(database: str, batches: list[list[dict[str, Any]]]) -> float:
    """The same mutations as rows, one multi-row INSERT per batch through asyncpg, no rules:
    what a push could cost at the very least. Mutations a second."""
    conn = await asyncpg.connect(database.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(
            "CREATE TEMP TABLE floor_mutations (client_id text, mutation_id bigint, "
            "name text, args text, hlc text)"
        )
        started = time.perf_counter()
        for mutations in batches:
            await conn.execute(
                "INSERT INTO floor_mutations SELECT * FROM "
                "unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[])",
                [m["clientId"] for m in mutations],
                [m["id"] for m in mutations],
                [m["name"] for m in mutations],
                [json.dumps(m["args"]) for m in mutations],
                [m["hlc"] for m in mutations],
            )
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    return sum(len(b) for b in batches) / elapsed


async def run(c: httpx.AsyncClient, database: str, pull_only: bool = False) -> None:
    if not pull_only:
        await _pushes(c, database)
    await _pull(c)


async def _pushes(c: httpx.AsyncClient, database: str) -> None:
    print("push throughput, one device, sequential pushes (mix: 4 completeTopic, 3 saveNote,")
    print("2 bookmarkTopic, 1 renameCourse in 10; 3 courses of 100 topics, 30 notes)")
    for size, total in ((1, 300), (100, 3000), (1000, 10000)):
        d = await _device(c)
        batches = [d.batch(size) for _ in range(total // size)]
        started = time.perf_counter()
        for mutations in batches:
            await _push(c, d, mutations)
        elapsed = time.perf_counter() - started
        ours = total / elapsed
        floor = await _floor(database, batches)
        print(
            f"  batch {size:>5}: {ours:8.0f} mutations/s ({total} in {elapsed:.2f} s); "
            f"floor (asyncpg, one INSERT per batch, no rules) {floor:8.0f}/s; "
            f"floor/ours {floor / ours:5.1f}x"
        )

    for devices, size, each in ((10, 1, 100), (50, 20, 100)):
        print(f"{devices} devices (one user each) pushing at once, batches of {size}")
        ds = [await _device(c) for _ in range(devices)]

        async def drain(d: Device, size: int = size, pushes: int = each // size) -> None:
            for _ in range(pushes):
                await _push(c, d, d.batch(size))

        # Warmed up first (each pooled connection prepares its statements once), then the
        # median of three rounds: the steady rate, not the first second of a cold process.
        await asyncio.gather(*(drain(d, pushes=max(1, each // size // 10)) for d in ds))
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            await asyncio.gather(*(drain(d) for d in ds))
            rates.append(devices * each / (time.perf_counter() - started))
        rates.sort()
        print(
            f"  {rates[1]:8.0f} mutations/s (median of 3 rounds of {devices * each}; "
            f"{rates[0]:.0f} to {rates[2]:.0f})"
        )


ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _served(setup: httpx.AsyncClient, settings: Settings, processes: int) -> None:
    """Batch 1 from 10 devices against real `manage.py serve` processes (1 to `processes`),
    over real HTTP from this process: the deployment shape, with the load generator's own
    CPU on the same 2 cores. Devices are spread over the processes, as a balancer would."""
    ds = [await _device(setup) for _ in range(10)]
    env = {
        **os.environ,
        "COURSEGEN_ENV": "test",
        "COURSEGEN_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": str(settings.database_url),
        "SECRET_KEY": str(settings.secret_key),
        "COURSEGEN_ARGON2_PROFILE": "CHEAPEST",
        "LOG_LEVEL": "warning",
    }
    env.pop("REDIS_URL", None)
    for count in range(1, processes + 1):
        ports = [_free_port() for _ in range(count)]
        servers = [
            subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in ports
        ]
        clients = [
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) for port in ports
        ]
        try:
            for client in clients:
                for _ in range(200):
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/health/live")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)

            async def drain(
                n: int, d: Device, pushes: int, clients: list[httpx.AsyncClient] = clients
            ) -> None:
                for _ in range(pushes):
                    await _push(clients[n % len(clients)], d, d.batch(1))

            await asyncio.gather(*(drain(n, d, 10) for n, d in enumerate(ds)))  # warm up
            started = time.perf_counter()
            await asyncio.gather(*(drain(n, d, 100) for n, d in enumerate(ds)))
            elapsed = time.perf_counter() - started
            print(
                f"batch 1, 10 devices, {count} web process(es) over HTTP: "
                f"{1000 / elapsed:8.0f} mutations/s (1000 in {elapsed:.2f} s)"
            )
        finally:
            for client in clients:
                await client.aclose()
            for server in servers:
                server.send_signal(signal.SIGTERM)
            for server in servers:
                server.wait(timeout=30)


async def _pull(c: httpx.AsyncClient) -> None:
    user = await sign_up(c)
    headers = {"authorization": f"Bearer {user.token}"}
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
    # The rows were written straight to the database: their entries are made now (the first
    # lock of the scope back-fills it), as the generation pipeline would have made them.
    async with scopes.transaction():
        await scopes.lock(scopes.course_scope(big.course_id))
    # Statistics for the 10,000 new rows, as autovacuum would gather them shortly: without
    # them the planner sorts the scope's entries for every page instead of walking the index.
    await connections.get("default").execute_script("ANALYZE sync_entries")
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
    parser.add_argument(
        "--pull-only", action="store_true", help="only the initial pull (on a fresh database)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="only batch 1 at 10 devices, against 1 to N real web processes over HTTP",
    )
    args = parser.parse_args()
    asyncio.run(main(args.database, args.pull_only, args.processes))
