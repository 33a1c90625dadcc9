"""Replica lag and the cost of read-your-writes, on a private primary and a streaming replica
made by `pg_basebackup -R` (tests/servers.py; both removed at the end).

    PYTHONPATH=. .venv/bin/python -m bench.replica_lag [--commits 300] [--writers 4]
        [--redis-url redis://127.0.0.1:6379/10]

Prints, in milliseconds, the time from a commit returning on the primary to the replica having
replayed it (`pg_last_wal_replay_lsn()` at or past the primary's insert position taken right
after the commit), for commits one at a time and under `--writers` concurrent writers; and the
round trips read-your-writes adds: the primary's WAL position after a write, and the mark's
Redis EVAL (after a write) and GET (before a routed read). The primary runs with PostgreSQL's
defaults for durability (synchronous_commit=on, fsync=on), unlike the tests' servers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import asyncpg

from replicas.marks import _RAISE
from tests.servers import PrivatePrimary, PrivateReplica


class _DurablePrimary(PrivatePrimary):
    # Later -c options win: PostgreSQL's own defaults, as deployed.
    options = PrivatePrimary.options + " -c fsync=on -c synchronous_commit=on"


def _dsn(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def _summary(name: str, values_ms: list[float]) -> str:
    ordered = sorted(values_ms)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return (
        f"{name:<44} n={len(ordered):<5} median {statistics.median(ordered):7.2f}  "
        f"p95 {p95:7.2f}  p99 {p99:7.2f}  max {ordered[-1]:7.2f}"
    )


async def _lag_once(primary: asyncpg.Connection, replica: asyncpg.Connection, key: int) -> float:
    await primary.execute("UPDATE lag_probe SET v = v + 1 WHERE id = $1", key)
    done = time.perf_counter()
    position = await primary.fetchval("SELECT pg_current_wal_insert_lsn()")
    while not await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", position):
        pass  # each probe is a round trip: polling as tight as the network allows
    return (time.perf_counter() - done) * 1000


async def _writer(url: str, key: int, stop: asyncio.Event) -> None:
    connection = await asyncpg.connect(url)
    try:
        while not stop.is_set():
            await connection.execute("UPDATE lag_probe SET v = v + 1 WHERE id = $1", key)
    finally:
        await connection.close()


async def _round_trips(connection: asyncpg.Connection, query: str, n: int = 500) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await connection.fetchval(query)
    return (time.perf_counter() - started) / n * 1e6


async def main(commits: int, writers: int, redis_url: str | None) -> None:
    primary_server = _DurablePrimary()
    replica_server = PrivateReplica(primary_server)
    try:
        await asyncio.to_thread(primary_server.start)
        setup = await asyncpg.connect(_dsn(primary_server.url))
        await setup.execute("CREATE TABLE lag_probe (id int PRIMARY KEY, v int NOT NULL)")
        await setup.execute("INSERT INTO lag_probe SELECT g, 0 FROM generate_series(0, 64) g")
        await setup.close()
        await asyncio.to_thread(replica_server.start)
        primary = await asyncpg.connect(_dsn(primary_server.url))
        replica = await asyncpg.connect(_dsn(replica_server.url))
        for _ in range(20):  # warm-up
            await _lag_once(primary, replica, 64)
        alone = [await _lag_once(primary, replica, 64) for _ in range(commits)]
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(_writer(_dsn(primary_server.url), k, stop)) for k in range(writers)
        ]
        await asyncio.sleep(0.5)
        loaded = [await _lag_once(primary, replica, 64) for _ in range(commits)]
        stop.set()
        await asyncio.gather(*tasks)
        insert_us = await _round_trips(primary, "SELECT pg_current_wal_insert_lsn()")
        replay_us = await _round_trips(replica, "SELECT pg_last_wal_replay_lsn()")
        await primary.close()
        await replica.close()
        print(_summary("commit -> replayed, one writer (ms)", alone))
        print(_summary(f"commit -> replayed, {writers} more writers (ms)", loaded))
        print(f"{'primary: pg_current_wal_insert_lsn() round trip':<44} {insert_us:7.0f} µs")
        print(f"{'replica: pg_last_wal_replay_lsn() round trip':<44} {replay_us:7.0f} µs")
        if redis_url:
            await _redis_costs(redis_url)
    finally:
        await asyncio.to_thread(replica_server.close)
        await asyncio.to_thread(primary_server.close)


async def _redis_costs(url: str, n: int = 1000) -> None:
    import redis.asyncio as redis

    client = redis.from_url(url)
    script = client.register_script(_RAISE)
    key = f"bench-replica-mark:{uuid.uuid4().hex}"
    try:
        started = time.perf_counter()
        for i in range(n):
            await script(keys=[key], args=[f"{i:016x}", 60])
        raise_us = (time.perf_counter() - started) / n * 1e6
        started = time.perf_counter()
        for _ in range(n):
            await client.get(key)
        get_us = (time.perf_counter() - started) / n * 1e6
        print(f"{'redis: raise the mark (EVALSHA) after a write':<44} {raise_us:7.0f} µs")
        print(f"{'redis: read the mark (GET) before a read':<44} {get_us:7.0f} µs")
    finally:
        await client.delete(key)
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.commits, args.writers, args.redis_url))
