"""The fan-out hub, feeds and followers, on the in-process log and (in the Redis run) on Redis.

Each test builds its own hub; jobs are rows in the test database that nothing runs, so the test
writes their logs itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from models import JobStatus
from redis_connection import connect_redis
from settings import Settings
from subscriptions.broker import Broker, InProcessBroker
from subscriptions.connections import SLOW_CONSUMER, LiveLimits, LiveRegistry
from subscriptions.events import ProgressEvent
from subscriptions.hub import Follower, ProgressHub
from subscriptions.progress_log import InProcessProgressLog
from subscriptions.redis_broker import RedisBroker
from subscriptions.redis_progress_log import RedisProgressLog, counter_key, stream_key
from tests.support import sign_up
from tests.test_live_support import REDIS_RUN, Job, assert_contiguous, job_row


@dataclass
class Kit:
    log: Any
    broker: Broker
    hub: ProgressHub

    async def append(self, job: Job, type: str = "topic_done", **fields: Any) -> ProgressEvent:
        fields.setdefault("progress", 0.5)
        event: ProgressEvent = await self.log.append(
            job.id, type, course_id=job.course_id, **fields
        )
        return event


@pytest.fixture(params=["in-process", "redis"] if REDIS_RUN else ["in-process"])
async def kit(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Kit]:
    if request.param == "in-process":
        log: Any = InProcessProgressLog()
        broker: Broker = InProcessBroker(log)
        client = None
    else:
        assert settings.redis_url
        client = connect_redis(settings.redis_url)
        log = RedisProgressLog(client)
        broker = RedisBroker(settings.redis_url)
    await broker.start()
    hub = ProgressHub(log, broker, poll_seconds=0.2, terminal_grace_seconds=0.5)
    try:
        yield Kit(log, broker, hub)
    finally:
        await hub.close()
        await broker.close()
        if client is not None:
            await client.aclose()


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> uuid.UUID:
    return (await sign_up(client)).id


async def drain(follower: Follower, limit: float = 5) -> list[ProgressEvent]:
    async def collect() -> list[ProgressEvent]:
        return [event async for event in follower]

    return await asyncio.wait_for(collect(), timeout=limit)


async def test_backlog_then_live_events_without_gaps_or_repeats(kit: Kit, owner: uuid.UUID) -> None:
    job = await job_row(owner)
    for _ in range(3):
        await kit.append(job)
    follower = kit.hub.follower(job.id, after=1)
    collected = asyncio.create_task(drain(follower))
    await asyncio.sleep(0.1)
    for _ in range(3):
        await kit.append(job)
    await kit.append(job, "completed", progress=1.0)
    events = await collected
    assert_contiguous([e.seq for e in events], first=2)
    assert events[-1].type == "completed" and len(events) == 6
    assert kit.hub.feeds == {}  # the feed went away with its last follower


async def test_followers_joining_during_a_flood_each_get_a_contiguous_run(
    kit: Kit, owner: uuid.UUID
) -> None:
    job = await job_row(owner)
    await kit.append(job, "queued", progress=0.0)

    async def writer() -> None:
        for index in range(120):
            await kit.append(job)
            if index % 10 == 0:
                await asyncio.sleep(0)
        await kit.append(job, "completed", progress=1.0)

    async def join(after: int, delay: float) -> list[ProgressEvent]:
        await asyncio.sleep(delay)
        return await drain(kit.hub.follower(job.id, after=after), limit=10)

    plan = ((0, 0.0), (1, 0.001), (0, 0.005), (5, 0.01))
    _, *results = await asyncio.gather(writer(), *(join(a, d) for a, d in plan))
    for (after, _), events in zip(plan, results, strict=True):
        assert events is not None
        assert_contiguous([e.seq for e in events], first=after + 1)
        assert events[-1].type == "completed" and events[-1].seq == 122


async def test_a_slow_consumer_is_cut_off_and_slows_nobody(kit: Kit, owner: uuid.UUID) -> None:
    job = await job_row(owner)
    registry = LiveRegistry(LiveLimits(send_queue_size=5))
    slow = registry.open(
        user_id=owner, session_id=None, expires_at=None, transport="t", bounded_lifetime=False
    )
    fast = registry.open(
        user_id=owner, session_id=None, expires_at=None, transport="t", bounded_lifetime=False
    )
    stuck = kit.hub.follower(job.id, connection=slow)
    assert await stuck.prepare()  # joined, then never reads again
    reader = asyncio.create_task(drain(kit.hub.follower(job.id, connection=fast)))
    await asyncio.sleep(0.05)
    for _ in range(20):
        await kit.append(job)
        await asyncio.sleep(0.005)  # a steady stream, not one burst larger than the queue
    await kit.append(job, "completed", progress=1.0)
    events = await reader
    assert_contiguous([e.seq for e in events])
    assert len(events) == 21
    assert slow.reason is SLOW_CONSUMER and fast.reason is None
    assert await stuck.next() is None  # the cut-off follower ends at once
    slow.release()
    fast.release()
    assert registry.connections == {}


async def test_a_job_whose_log_is_gone_ends_from_the_database(kit: Kit, owner: uuid.UUID) -> None:
    done = await job_row(owner, JobStatus.SUCCEEDED, finished_ago=3600)
    events = await drain(kit.hub.follower(done.id, after=7))
    assert [(e.seq, e.type) for e in events] == [(8, "completed")]
    assert events[0].course_id == done.course_id and events[0].data["fromDatabase"]

    failed = await job_row(owner, JobStatus.FAILED, finished_ago=3600, error_code="MODEL_DOWN")
    events = await drain(kit.hub.follower(failed.id))
    assert [(e.seq, e.type, e.data["code"]) for e in events] == [(1, "failed", "MODEL_DOWN")]
    assert events[0].message == "It broke."


async def test_a_quiet_log_without_its_end_gets_it_from_the_database(
    kit: Kit, owner: uuid.UUID
) -> None:
    # A worker wrote the job's end to the database and died before appending the event.
    job = await job_row(owner, JobStatus.CANCELLED, finished_ago=10)
    for _ in range(3):
        await kit.append(job)
    events = await drain(kit.hub.follower(job.id))
    assert [(e.seq, e.type) for e in events][-2:] == [(3, "topic_done"), (4, "cancelled")]


async def test_who_already_has_the_end_gets_nothing_more(kit: Kit, owner: uuid.UUID) -> None:
    job = await job_row(owner, JobStatus.SUCCEEDED, finished_ago=1)
    await kit.append(job)
    await kit.append(job, "completed", progress=1.0)
    follower = kit.hub.follower(job.id, after=2)
    assert not await follower.prepare()
    assert await follower.next() is None
    assert [e.seq for e in await drain(kit.hub.follower(job.id, after=1))] == [2]


async def test_a_retried_job_is_followed_past_its_first_end(kit: Kit, owner: uuid.UUID) -> None:
    job = await job_row(owner)
    for kind in ("queued", "started", "failed", "queued", "started"):
        await kit.append(job, kind)
    follower = kit.hub.follower(job.id)
    collected = asyncio.create_task(drain(follower))
    await asyncio.sleep(0.1)
    await kit.append(job, "completed", progress=1.0)
    types = [e.type for e in await collected]
    assert types == ["queued", "started", "failed", "queued", "started", "completed"]


async def test_generic_publish_subscribe_reaches_every_subscriber(kit: Kit) -> None:
    channel = f"sync:{uuid.uuid4()}"
    first, second = kit.broker.subscribe(channel), kit.broker.subscribe(channel)
    async with first, second:
        await asyncio.sleep(0.2)  # the Redis broker subscribes within its poll interval
        await kit.broker.publish(channel, "poke-1")
        received = []
        for subscription in (first, second):
            while True:
                message = await asyncio.wait_for(anext(subscription), timeout=5)
                if not message.resync:  # the Redis broker also resyncs once subscribed
                    break
            received.append(message.data)
    assert received == ["poke-1", "poke-1"]


@pytest.mark.skipif(not REDIS_RUN, reason="runs in the PostgreSQL + Redis run")
async def test_numbering_survives_redis_losing_the_log(
    settings: Settings, owner: uuid.UUID
) -> None:
    assert settings.redis_url
    client = connect_redis(settings.redis_url)
    try:
        log = RedisProgressLog(client)
        job = await job_row(owner)
        for _ in range(5):
            await log.append(job.id, "topic_done", progress=0.1, course_id=job.course_id)
        # A restart of Redis without persistence: the stream and its counter are gone.
        await client.delete(stream_key(job.id), counter_key(job.id))
        event = await log.append(job.id, "completed", progress=1.0, course_id=job.course_id)
        assert event.seq == 6
        # The writer put back what it had appended: a reader misses nothing.
        assert [e.seq for e in await log.read(job.id)] == [1, 2, 3, 4, 5, 6]
    finally:
        await client.aclose()
