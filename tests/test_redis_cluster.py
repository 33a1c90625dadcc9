"""The two multi-key paths a Redis Cluster refuses unless their keys share a slot: the progress
log's append/replay scripts (stream + counter) and the worker's one XREADGROUP over the three
tier streams. Run against a real private 3-master cluster."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from generation.redis_queue import GROUP, TIERS, _stream
from subscriptions.redis_progress_log import RedisProgressLog, counter_key, stream_key
from tests.servers import PrivateRedis, PrivateRedisCluster


@pytest.fixture
def cluster() -> Iterator[PrivateRedisCluster]:
    if not PrivateRedis.available():
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server is not installed")
    servers = PrivateRedisCluster()
    try:
        servers.start()
        yield servers
    finally:
        servers.close()


def test_multi_key_operations_keep_their_keys_in_one_slot() -> None:
    job = uuid.uuid4()
    assert key_slot(stream_key(job).encode()) == key_slot(counter_key(job).encode())
    assert len({key_slot(_stream(tier).encode()) for tier in TIERS}) == 1
    # Different jobs' logs still spread over the cluster.
    assert len({key_slot(stream_key(uuid.uuid4()).encode()) for _ in range(50)}) > 1


async def test_progress_log_and_tier_read_work_on_a_cluster(cluster: PrivateRedisCluster) -> None:
    client = RedisCluster.from_url(cluster.url)
    try:
        log = RedisProgressLog(client)  # type: ignore[arg-type]
        jobs = [uuid.uuid4() for _ in range(12)]
        for job in jobs:
            for _ in range(3):
                await log.append(job, "topic_done", progress=0.5)
        for job in jobs:
            assert [e.seq for e in await log.read(job, after=1)] == [2, 3]
        # Proves it is really a cluster: the logs landed on more than one node.
        owners = {client.get_node_from_key(stream_key(job)) for job in jobs}
        assert None not in owners and len(owners) > 1

        for tier in TIERS:
            await client.xgroup_create(_stream(tier), GROUP, id="0", mkstream=True)
            await client.xadd(_stream(tier), {"job": tier})
        streams: dict[Any, Any] = {_stream(t): ">" for t in TIERS}
        reply: Any = await client.xreadgroup(GROUP, "w1", streams, count=1)
        assert sorted(entries[0][1][b"job"].decode() for _, entries in reply) == sorted(TIERS)
    finally:
        await client.aclose()
