"""Outage drills with figures: Redis killed and restarted, PostgreSQL restarted and stopped,
each under a steady load of GraphQL queries against a real web process (and, for Redis, a real
worker process). Every server is private (a PostgreSQL cluster in a temporary directory, a
redis-server on a free port, both removed at the end): the machine's own servers are untouched.

    PYTHONPATH=. .venv/bin/python -m bench.outage_drills [--outage 3] [--concurrency 4]

Prints, per drill and phase: how the requests sent during the outage ended (ok, unavailable =
503 TEMPORARILY_UNAVAILABLE with Retry-After, timeout, masked, transport, other), the slowest
request, and the time to recover: from the server being back (the restart or start command
returned) to the first request that succeeded afterwards. The tests with the same drills
(tests/test_outage_drills.py) assert the behaviour; this only measures.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from models import db
from settings import Environment, Settings
from tests.outage_support import QueryLoad, Sample
from tests.servers import PrivatePostgres, PrivateRedis, free_port
from tests.support import SIGN_UP, spawn_worker
from tests.test_live_support import GENERATE, spawn_web, stop, wait_ready

SECRET = "outage-drill-secret-key-that-is-long-enough-0123456789"


def _settings(url: str) -> Settings:
    return Settings(
        COURSEGEN_ENV=Environment.TEST,
        DATABASE_URL=url,
        SECRET_KEY=SECRET,
        COURSEGEN_ARGON2_PROFILE="CHEAPEST",
    )


async def _sign_up(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        email = f"drill-{uuid.uuid4().hex[:8]}@example.com"
        variables = {
            "input": {
                "email": email,
                "password": "correct horse battery staple",
                "displayName": "Drill",
            }
        }
        response = await client.post("/graphql", json={"query": SIGN_UP, "variables": variables})
        return str(response.json()["data"]["signUp"]["accessToken"])


def _report(title: str, samples: list[Sample], back: float | None, first_ok: Sample | None) -> None:
    kinds: dict[str, int] = {}
    for sample in samples:
        kinds[sample.kind] = kinds.get(sample.kind, 0) + 1
    slowest = max((s.ended - s.started for s in samples), default=0.0)
    print(f"  {title}")
    print(f"    requests during the outage: {len(samples)} -> {kinds}")
    print(f"    slowest of them: {slowest * 1000:.0f} ms")
    if back is not None and first_ok is not None:
        print(
            f"    time to recover (server back -> first success): "
            f"{(first_ok.ended - back) * 1000:.0f} ms"
        )


async def _phase(load: QueryLoad, action: Any, outage: float) -> tuple[float, float, Sample]:
    """Runs `action` (what takes the server down, and maybe back); returns when it began, when
    the server was back, and the first request that succeeded after that."""
    began = time.monotonic()
    await asyncio.to_thread(action)
    back = time.monotonic()
    first = await load.wait_for_ok_after(back)
    await asyncio.sleep(outage / 3)  # a little steady state between phases
    return began, back, first


async def postgres_drill(outage: float, concurrency: int, work: Path) -> None:
    print(
        "PostgreSQL drill: one web process (embedded adapters), "
        f"{concurrency} clients looping over a query"
    )
    pg = PrivatePostgres()
    web = None
    load: QueryLoad | None = None
    try:
        await asyncio.to_thread(pg.start)
        settings = _settings(pg.url)
        await db.apply_migrations(settings)
        port = free_port()
        web = spawn_web(
            settings,
            port,
            data_dir=work,
            log_file=work / "pg-web.log",
            extra={"REQUEST_TIMEOUT_SECONDS": "5"},
        )
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, web)
        load = QueryLoad(base, await _sign_up(base), concurrency=concurrency)
        load.start()
        await load.wait_for_ok_after(time.monotonic())
        await asyncio.sleep(1)

        began, back, first = await _phase(load, pg.restart, outage)
        window = [s for s in load.samples if began <= s.started <= first.started]
        _report("pg_ctl restart -m fast", window, back, first)

        def stop_then_start() -> None:
            pg.stop()
            time.sleep(outage)
            pg.start()

        began, back, first = await _phase(load, stop_then_start, outage)
        window = [s for s in load.samples if began <= s.started <= first.started]
        _report(f"stopped for {outage:g} s, then started", window, back, first)
        await load.stop()
        print(f"    all requests of the drill: {len(load.samples)} -> {dict(load.kinds())}")
        print(f"    web process restarted: {'no' if web.poll() is None else 'YES (it died)'}")
    finally:
        if load is not None:
            await load.stop()
        if web is not None:
            stop(web)
        await asyncio.to_thread(pg.close)


async def redis_drill(outage: float, concurrency: int, work: Path) -> None:
    print(
        "Redis drill: one web process and one worker process on PostgreSQL and Redis, "
        f"{concurrency} clients looping over a query, generateCourse tried every 0.1 s"
    )
    pg, redis = PrivatePostgres(), PrivateRedis()
    procs = []
    load: QueryLoad | None = None
    try:
        await asyncio.to_thread(pg.start)
        redis.start()
        settings = _settings(pg.url)
        await db.apply_migrations(settings)
        port = free_port()
        web = spawn_web(
            settings, port, redis_url=redis.url, data_dir=work, log_file=work / "redis-web.log"
        )
        procs = [web, spawn_worker(settings, redis.url, latency_ms=10)]
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, web)
        token = await _sign_up(base)
        load = QueryLoad(base, token, concurrency=concurrency)
        load.start()
        headers = {"authorization": f"Bearer {token}"}
        variables = {"input": {"topic": "Drill", "subjectCount": 1, "topicsPerSubject": 2}}
        async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as client:

            async def generate() -> tuple[str, str | None]:
                response = await client.post(
                    "/graphql", json={"query": GENERATE, "variables": variables}
                )
                result = (response.json().get("data") or {}).get("generateCourse") or {}
                job = (result.get("job") or {}).get("id")
                return str(result.get("__typename") or response.status_code), job

            await load.wait_for_ok_after(time.monotonic())
            killed = time.monotonic()
            redis.kill()
            refusals: dict[str, int] = {}
            while time.monotonic() - killed < outage:
                kind, _ = await generate()
                refusals[kind] = refusals.get(kind, 0) + 1
                await asyncio.sleep(0.1)
            sse = await client.get("/events/jobs/" + str(uuid.uuid4()))
            redis.start()
            back = time.monotonic()
            window = [s for s in load.samples if killed <= s.started <= back]
            _report(f"Redis killed for {outage:g} s (queries)", window, None, None)
            print(f"    generateCourse during the outage: {refusals}")
            print(
                f"    SSE follow during the outage: {sse.status_code} {sse.json().get('code')}"
                f", Retry-After {sse.headers.get('retry-after')}"
            )

            job = None
            while job is None:
                kind, job = await generate()
                if job is None:
                    await asyncio.sleep(0.05)
            accepted = time.monotonic()
            while True:  # live progress waits for the broker to resubscribe
                async with client.stream("GET", f"/events/jobs/{job}") as stream:
                    if stream.status_code != 503:
                        break  # a stream was opened: close it at once
                await asyncio.sleep(0.05)
            live = time.monotonic()
            while True:
                state = await client.post(
                    "/graphql",
                    json={
                        "query": "query($id: ID!) { generationJob(id: $id) { status } }",
                        "variables": {"id": job},
                    },
                )
                if state.json()["data"]["generationJob"]["status"] == "SUCCEEDED":
                    break
                await asyncio.sleep(0.05)
            done = time.monotonic()
        print(f"    Redis back -> generateCourse accepted: {(accepted - back) * 1000:.0f} ms")
        print(f"    Redis back -> live progress (SSE) accepted: {(live - back) * 1000:.0f} ms")
        print(
            f"    Redis back -> a new job run to the end by the worker: "
            f"{(done - back) * 1000:.0f} ms"
        )
        await load.stop()
        print(f"    all queries of the drill: {len(load.samples)} -> {dict(load.kinds())}")
        alive = all(p.poll() is None for p in procs)
        print(f"    web or worker process restarted: {'no' if alive else 'YES (one died)'}")
    finally:
        if load is not None:
            await load.stop()
        stop(*procs)
        redis.kill()
        await asyncio.to_thread(pg.close)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=3.0, help="seconds a server stays down")
    parser.add_argument("--concurrency", type=int, default=4, help="looping query clients")
    args = parser.parse_args()
    if not PrivatePostgres.available() or not PrivateRedis.available():
        raise SystemExit("needs PostgreSQL server binaries and redis-server on this machine")
    with tempfile.TemporaryDirectory(prefix="coursegen-drills-") as work:
        await postgres_drill(args.outage, args.concurrency, Path(work))
        print()
        await redis_drill(args.outage, args.concurrency, Path(work))


if __name__ == "__main__":
    # SIGTERM as Ctrl-C: the drills' `finally` blocks stop the servers and processes they began.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(main())
