"""Every Redis component on a real private 3-master cluster (`REDIS_URL=redis+cluster://…`).

A Redis Cluster refuses a script or multi-key command whose keys are in different slots
(CROSSSLOT), and a script touching a key it did not declare on another node. Each component
runs here with its keys spread over the three nodes (many users, jobs, limits): any such
key would fail the test. Pub/sub is checked across nodes and through a node's death. The
end-to-end run with real web and worker processes is in tests/test_redis_cluster_processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

import keyspace
from ai.breaker import Admission, BreakerState, Outcome, RedisBreaker
from ai.budget import BudgetLimits, RedisBudget
from ai.config import BreakerPolicy
from ai.offline_writer import OfflineCourseWriter
from ai.response_cache import RedisCache
from generation.redis_queue import (
    GROUP,
    TIERS,
    RedisJobQueue,
    RedisJobWorker,
    _stream,
    dead_stream,
    ensure_groups,
)
from redis_connection import (
    NodeRotation,
    connect_redis,
    connect_subscriber,
    is_cluster_url,
    parse_cluster_url,
)
from services.errors import DomainError, ErrorCode
from services.rate_limits import RateLimits
from settings import Settings
from subscriptions.redis_broker import RedisBroker
from subscriptions.redis_progress_log import RedisProgressLog, counter_key, stream_key
from tests.servers import PrivateRedis, PrivateRedisCluster
from web.persisted_queries import RedisDocumentStore, _redis_key


def _start_cluster() -> PrivateRedisCluster:
    if not PrivateRedis.available() or not _has_cli():
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server and redis-cli are required in CI (.ci/apt-packages)")
        pytest.skip("redis-server/redis-cli are not installed")
    servers = PrivateRedisCluster()
    try:
        servers.start()
    except BaseException:
        servers.close()
        raise
    return servers


def _has_cli() -> bool:
    import shutil

    return shutil.which("redis-cli") is not None


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateRedisCluster]:
    """One cluster for the module's tests (each uses keys of its own); none kills a node."""
    servers = _start_cluster()
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
async def client(cluster: PrivateRedisCluster) -> AsyncIterator[Any]:
    made = connect_redis(cluster.url)
    try:
        yield made
    finally:
        await made.aclose()


def _spread(client: Any, keys: list[str]) -> int:
    """On how many nodes the keys live: the test proves nothing if they all share one."""
    return len({client.get_node_from_key(key).name for key in keys})


def test_cluster_urls() -> None:
    address = parse_cluster_url("redis+cluster://u:p%40ss@a.example:7000,b.example:7001,c/")
    assert address.nodes == [("a.example", 7000), ("b.example", 7001), ("c", 6379)]
    assert address.connection["username"] == "u" and address.connection["password"] == "p@ss"
    assert "ssl" not in address.cluster_options
    tls = parse_cluster_url("rediss+cluster://h:1,h:2/0?ssl_cert_reqs=none")
    assert tls.cluster_options["ssl"] is True and tls.cluster_options["ssl_cert_reqs"] == "none"
    assert is_cluster_url("redis+cluster://h:1/") and not is_cluster_url("redis://h:1/0")
    with pytest.raises(ValueError, match="database numbers"):
        parse_cluster_url("redis+cluster://h:1/3")
    with pytest.raises(ValueError, match="host:port"):
        parse_cluster_url("redis+cluster://h:1,:2/")


def test_multi_key_operations_keep_their_keys_in_one_slot() -> None:
    job = uuid.uuid4()
    assert key_slot(stream_key(job).encode()) == key_slot(counter_key(job).encode())
    assert len({key_slot(_stream(tier).encode()) for tier in TIERS}) == 1
    # Different jobs' logs still spread over the cluster.
    assert len({key_slot(stream_key(uuid.uuid4()).encode()) for _ in range(50)}) > 1


async def test_progress_log_and_tier_read_work_on_a_cluster(client: Any) -> None:
    assert isinstance(client, RedisCluster)
    log = RedisProgressLog(client)
    jobs = [uuid.uuid4() for _ in range(12)]
    for job in jobs:
        for _ in range(3):
            await log.append(job, "topic_done", progress=0.5)
    for job in jobs:
        assert [e.seq for e in await log.read(job, after=1)] == [2, 3]
    assert _spread(client, [stream_key(job) for job in jobs]) > 1


async def test_job_queue_and_cancels_on_a_cluster(
    cluster: PrivateRedisCluster, client: Any, settings: Settings
) -> None:
    queue = RedisJobQueue(client)
    await ensure_groups(client)
    await ensure_groups(client)  # BUSYGROUP is fine
    jobs = {tier: uuid.uuid4() for tier in TIERS}
    for tier, job in jobs.items():
        await queue.enqueue(job, tier)
    assert await queue.waiting_by_tier() == dict.fromkeys(TIERS, 1)
    subscriber = connect_subscriber(cluster.url)
    worker = RedisJobWorker(
        client, settings, OfflineCourseWriter(), RedisProgressLog(client), subscriber=subscriber
    )
    # One XREADGROUP over the three tier streams, premium first by its head start.
    taken = [await worker._take() for _ in TIERS]
    assert [t[2] for t in taken if t] == [jobs["premium"], jobs["standard"], jobs["free"]]
    await worker._renew()
    # A dead worker's entries are claimed (XAUTOCLAIM) by another.
    other = RedisJobWorker(client, settings, OfflineCourseWriter(), RedisProgressLog(client))
    other.idle_ms = 0
    claimed = await other._take()
    assert claimed is not None and claimed[3] is True
    for stream, entry_id, _, _ in [t for t in taken if t]:
        await client.xack(stream, GROUP, entry_id)
    # Dead letters: one stream, looked through and trimmed by job.
    await client.xadd(dead_stream(), {"job": str(jobs["free"]), "tier": "free"})
    await queue.forget_dead_letter(jobs["free"])
    assert await client.xlen(dead_stream()) == 0

    # The cancel listener (its own pub/sub connection to one node) hears a cancel published
    # through the cluster client, whichever node either is on.
    job = uuid.uuid4()
    running: asyncio.Task[None] = asyncio.create_task(asyncio.sleep(30))
    worker._running[job] = running
    listener = asyncio.create_task(worker._listen_for_cancels())
    try:
        for _ in range(100):
            await queue.cancel(job)
            await asyncio.wait({running}, timeout=0.05)
            if running.done():
                break
        assert running.cancelled()
    finally:
        worker.stop()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await subscriber.aclose()


async def test_breakers_budgets_and_cache_on_a_cluster(client: Any) -> None:
    prefix = f"test:ai:{uuid.uuid4().hex[:8]}"
    policy = BreakerPolicy(window_seconds=60, min_calls=2, error_rate=0.5, cooldown_seconds=30)
    breaker = RedisBreaker(client, policy, probe_ttl=5, prefix=prefix)
    models = [f"model-{n}" for n in range(6)]
    for model in models:
        assert await breaker.admit(model) is Admission.ALLOW
        await breaker.record(model, Outcome.FAILURE, probe=False)
        await breaker.record(model, Outcome.FAILURE, probe=False)
        assert await breaker.state(model) is BreakerState.OPEN
        assert await breaker.admit(model) is Admission.DENY
    assert _spread(client, [breaker._keys(m)[0] for m in models]) > 1

    now = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
    budget = RedisBudget(client, prefix=prefix, clock=lambda: now, reservation_seconds=60)
    limits = BudgetLimits(daily=1_000_000, monthly=None)  # one dollar a day
    users = [f"user-{n}" for n in range(8)]
    for user in users:
        held = await budget.reserve(user, limits, Decimal("0.6"))
        assert held is not None
        assert await budget.reserve(user, limits, Decimal("0.6")) is None  # over the day
        await budget.settle(held, Decimal("0.1"))
        assert await budget.spent(user) == (Decimal("0.1"), Decimal("0.1"))
        forgotten = await budget.reserve(user, limits, Decimal("0.5"))  # never settled
        assert forgotten is not None
        assert await budget.reserved(user) == Decimal("0.5")
    # Past midnight and past the holds' expiry: the sweep releases each hold against the
    # day and month it was taken in (counter keys named by the hold, not by the clock).
    now = now + timedelta(minutes=5)
    for user in users[:4]:  # swept by a look at the budget
        assert await budget.reserved(user) == Decimal("0")
        assert await budget.remaining(user, limits) == Decimal("1")  # a new day
    for user in users:  # the rest swept by the reservation itself
        assert await budget.reserve(user, limits, Decimal("0.2")) is not None
        assert await budget.reserved(user) == Decimal("0.2")
    assert _spread(client, [budget._base(user) for user in users]) > 1
    for user in (users[0], users[-1]):
        counters = [
            *budget._keys(user, "20261130", "202611")[:2],
            *budget._keys(user, "20261201", "202612")[:2],
        ]
        values = [int(await client.get(key)) for key in counters]
        assert values == [100_000, 100_000, 200_000, 200_000]

    cache = RedisCache(client, prefix=prefix)
    keys = [uuid.uuid4().hex for _ in range(8)]
    for key in keys:
        await cache.set(key, f"answer {key}", ttl=60)
    assert [await cache.get(key) for key in keys] == [f"answer {key}" for key in keys]


async def test_rate_limits_and_persisted_queries_on_a_cluster(
    cluster: PrivateRedisCluster, client: Any
) -> None:
    limits = RateLimits(cluster.url)
    who = [uuid.uuid4().hex for _ in range(6)]
    for user in who:
        await limits.hit("generate", "2/hour", user)
        await limits.hit("generate", "2/hour", user)
        with pytest.raises(DomainError) as refused:
            await limits.hit("generate", "2/hour", user)
        assert refused.value.code is ErrorCode.RATE_LIMITED
        # The weighted sliding window: two counters per limit, under one hash tag.
        assert await limits.charge("cost", "100/minute", 60, user) == 40
        with pytest.raises(DomainError):
            await limits.charge("cost", "100/minute", 60, user)
        await limits.hit_or_local("login", "5/minute", user, "10.0.0.1")
    # Counted in the cluster, not in the in-process fallback.
    pattern = keyspace.key("limits", "*")
    stored = [key.decode() async for key in client.scan_iter(match=pattern)]
    for action in ("generate", "cost", "login"):
        assert len([k for k in stored if f"/{action}/" in k]) >= len(who), (action, stored)
    assert _spread(client, stored) > 1

    store = RedisDocumentStore(client, ttl_seconds=60)
    documents = {uuid.uuid4().hex: "{ __typename }" for _ in range(8)}
    for sha, document in documents.items():
        await store.put(sha, document)
    assert {sha: await store.get(sha) for sha in documents} == documents
    assert await client.exists(*(_redis_key(sha) for sha in documents)) == len(documents)


async def test_broker_hears_publishes_from_every_node_and_outlives_its_node() -> None:
    servers = _start_cluster()  # its own cluster: a node dies here
    broker = RedisBroker(servers.url, poll_seconds=0.02)
    publisher = connect_redis(servers.url)
    plain: list[Any] = [redis.from_url(servers.node_url(i)) for i in range(3)]
    heard: list[str | None] = []
    woken = asyncio.Event()
    try:
        await broker.start()
        assert broker.available
        unlisten = broker.listen("news", lambda message: heard.append(message.data))
        job = uuid.uuid4()
        broker.watch_job(job, woken.set)
        # The progress log's append PUBLISHes from inside its script, on the job's node.
        log = RedisProgressLog(publisher)
        for _ in range(100):
            await log.append(job, "topic_done", progress=0.1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), 0.05)
            if woken.is_set():
                break
        assert woken.is_set()
        for index in range(3):  # a PUBLISH on any node reaches the subscriber's node
            await _until_heard(heard, lambda i=index: plain[i].publish(_news(), f"from {i}"))
        await _until_heard(heard, lambda: broker.publish("news", "via cluster"))
        assert {"from 0", "from 1", "from 2", "via cluster"} <= set(heard)

        rotation = broker._subscriber
        assert isinstance(rotation, NodeRotation) and rotation.node is not None
        dead = [f"127.0.0.1:{port}" for port in servers.ports].index(rotation.node)
        servers.kill_node(dead)
        for _ in range(200):  # reconnected (to another node) and resubscribed
            if broker.connections >= 2 and broker.available:
                break
            await asyncio.sleep(0.05)
        assert broker.connections >= 2 and rotation.node != f"127.0.0.1:{servers.ports[dead]}"
        alive = (dead + 1) % 3
        await _until_heard(heard, lambda: plain[alive].publish(_news(), "after the death"))
        unlisten()
    finally:
        await broker.close()
        await publisher.aclose()
        for connection in plain:
            await connection.aclose()
        servers.close()


def _news() -> str:
    from subscriptions.broker import generic_channel

    return generic_channel("news")


async def _until_heard(heard: list[str | None], publish: Any) -> None:
    """Publish until the listener has it (a subscription confirms asynchronously)."""
    for _ in range(100):
        before = len(heard)
        await publish()
        await asyncio.sleep(0.03)
        if len(heard) > before and heard[-1] is not None:
            return
    raise AssertionError(f"never heard; got {heard}")
