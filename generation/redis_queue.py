"""Production job queue: Redis Streams consumer groups, worked by `worker` processes.

- One stream per tier; a worker takes the entry with the smallest aged key (arrival time minus
  the tier's head start), as the embedded runner does, so premium goes first and nobody starves.
- A taken entry stays pending until the job ends (XACK). A worker keeps its entries fresh while
  it works; when a worker dies (kill -9), its entries go idle and another worker takes them over
  with XAUTOCLAIM after `generation_claim_idle_seconds`.
- A job past its attempts is failed (ATTEMPTS_EXHAUSTED) and its entry moved to a dead-letter
  stream, from which `replay_dead_letter` re-queues it once.
- Cancellation is published on a channel every worker listens to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

import keyspace
from ai.writer import CourseWriter
from generation import dead_letters, jobs
from generation.pipeline import run_job
from generation.runner import TIER_HEAD_START_SECONDS
from models import GenerationJob, JobStatus
from redis_connection import CLUSTER_OUTAGE, RedisClient
from settings import Settings
from subscriptions.progress_log import ProgressLog
from subscriptions.redis_progress_log import RedisProgressLog

log = logging.getLogger("coursegen.generation")

TIERS = ("premium", "standard", "free")
GROUP = "workers"
# What a restarted or briefly unreachable Redis raises (NOGROUP after a restart is a reply;
# so does a cluster with slots that have no reachable owner).
REDIS_TROUBLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ResponseError,
    *CLUSTER_OUTAGE,
)


def dead_stream() -> str:
    return keyspace.key("jobs", "dead")


def cancel_channel() -> str:
    return keyspace.key("jobs", "cancel")


def _stream(tier: str) -> str:
    # The worker reads all three tiers in one XREADGROUP, which a Redis Cluster allows only for
    # keys in one slot: the shared hash tag puts the tier streams on one node. One slot is fine
    # for a job queue (a few entries per course generation; the jobs' event logs spread out).
    return keyspace.key("jobs", "{tiers}", tier if tier in TIERS else "free")


def _ms(entry_id: bytes | str) -> int:
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.split("-", 1)[0])


class RedisJobQueue:
    """The producer side, used by web processes: enqueue and cancel."""

    def __init__(self, client: RedisClient) -> None:
        # redis-py types replies as unions of raw protocol shapes; we decode them ourselves.
        self.client: Any = client

    async def enqueue(self, job_id: uuid.UUID, tier: str) -> None:
        await self.client.xadd(_stream(tier), {"job": str(job_id)})

    async def cancel(self, job_id: uuid.UUID) -> None:
        await self.client.publish(cancel_channel(), str(job_id))

    async def depth(self) -> int:
        return sum((await self.waiting_by_tier()).values())

    async def waiting_by_tier(self) -> dict[str, int]:
        """Entries not yet delivered to any worker, by tier (the consumer group's lag)."""
        waiting: dict[str, int] = {}
        for tier in TIERS:
            with contextlib.suppress(ResponseError):
                groups = await self.client.xinfo_groups(_stream(tier))
                waiting[tier] = sum(int(g.get("lag") or 0) for g in groups)
        return waiting

    async def forget_dead_letter(self, job_id: uuid.UUID) -> None:
        """Drop a replayed job's entries from the dead-letter stream."""
        entries = await self.client.xrange(dead_stream())
        stale = [entry_id for entry_id, fields in entries if _job(fields) == job_id]
        if stale:
            await self.client.xdel(dead_stream(), *stale)


async def ensure_groups(client: Any) -> None:
    for tier in TIERS:
        try:
            await client.xgroup_create(_stream(tier), GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise


async def replay_dead_letter(client: Any, entry_id: str) -> uuid.UUID | None:
    """Re-queue the job of a dead-letter entry once; None if it was already replayed.

    The same guarded transition as the operator's `replayDeadLetter` (generation.dead_letters):
    the course turns `generating` again and the job's log says `queued`.
    """
    entries = await client.xrange(dead_stream(), min=entry_id, max=entry_id)
    if not entries or not await client.xdel(dead_stream(), entry_id):
        return None  # another replay took it first: XDEL succeeds once
    job_id = _job(entries[0][1])
    replayed = await dead_letters.replay(job_id, RedisJobQueue(client), RedisProgressLog(client))
    return job_id if replayed.requeued else None


class RedisJobWorker:
    """The consumer side, run by `python manage.py worker`."""

    def __init__(
        self,
        client: RedisClient,
        settings: Settings,
        writer: CourseWriter,
        events: ProgressLog,
        *,
        concurrency: int | None = None,
        name: str | None = None,
        subscriber: Any | None = None,
    ) -> None:
        # redis-py types replies as unions of raw protocol shapes; we decode them ourselves.
        self.client: Any = client
        # Where the cancel listener's pub/sub connections come from (`.pubsub()`):
        # redis_connection.connect_subscriber's, or the client itself on one server.
        self.subscriber: Any = subscriber if subscriber is not None else client
        self.settings = settings
        self.writer = writer
        self.events = events
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency or settings.generation_workers
        self.idle_ms = int(settings.generation_claim_idle_seconds * 1000)
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Entries whose run crashed: no longer renewed, so they go idle and are taken over.
        self._abandoned: set[str] = set()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._global_limit = asyncio.Semaphore(settings.generation_global_concurrency)
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        await ensure_groups(self.client)
        await self.reconcile()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._listen_for_cancels())
            group.create_task(self._keep_alive())
            group.create_task(self._consume())

    def stop(self) -> None:
        self._stopping.set()

    async def reconcile(self) -> None:
        """Queue again the unfinished jobs that no stream holds (a Redis restart loses them).

        The database is the record; the streams only carry work. A job found `running` with
        no entry anywhere lost its worker's entry, so it is re-queued as a takeover (the
        attempt fence keeps a still-living old run from finishing it).
        """
        held: set[uuid.UUID] = set()
        for tier in TIERS:
            for _, fields in await self.client.xrange(_stream(tier)):
                held.add(_job(fields))
        for job_id, tier, status in await jobs.unfinished_jobs():
            if job_id in held or job_id in self._running:
                continue
            entry = {"job": str(job_id)}
            if status is JobStatus.RUNNING:
                entry["takeover"] = "1"
            await self.client.xadd(_stream(tier), entry)
            log.warning("worker %s: re-queued job %s missing from the queue", self.name, job_id)

    async def _consume(self) -> None:
        while not self._stopping.is_set():
            await self._slots.acquire()
            try:
                taken = await self._take()
            except REDIS_TROUBLE as error:
                # Redis restarted (streams and groups gone) or unreachable for a moment.
                self._slots.release()
                log.warning("worker %s: queue unavailable (%s); retrying", self.name, error)
                await asyncio.sleep(0.5)
                with contextlib.suppress(*REDIS_TROUBLE):
                    await ensure_groups(self.client)
                    await self.reconcile()
                continue
            except BaseException:
                self._slots.release()
                raise
            if taken is None:
                self._slots.release()
                continue
            stream, entry_id, job_id, takeover = taken
            self._abandoned.discard(entry_id)
            task = asyncio.create_task(self._process(stream, entry_id, job_id, takeover))
            self._running[job_id] = task
        await self._drain()

    async def _take(self) -> tuple[str, str, uuid.UUID, bool] | None:
        """A dead worker's idle entry first, else the next entry by aged priority."""
        for tier in TIERS:
            stream = _stream(tier)
            _, claimed, _ = await self.client.xautoclaim(
                stream, GROUP, self.name, min_idle_time=self.idle_ms, start_id="0-0", count=1
            )
            if claimed:  # its consumer stopped renewing it: that worker is gone
                entry_id, fields = claimed[0]
                return stream, _decode_id(entry_id), _job(fields), True
        best: tuple[float, str] | None = None
        for tier in TIERS:
            stream = _stream(tier)
            head = await self._next_undelivered(stream)
            if head is not None:
                key = head / 1000 - TIER_HEAD_START_SECONDS[tier]
                if best is None or key < best[0]:
                    best = (key, stream)
        streams = {best[1]: ">"} if best else {_stream(t): ">" for t in TIERS}
        reply = await self.client.xreadgroup(
            GROUP, self.name, streams, count=1, block=None if best else 1000
        )
        for stream_name, entries in reply or []:
            for entry_id, fields in entries:
                takeover = _text(fields.get(b"takeover") or b"0") == "1"
                return _text(stream_name), _decode_id(entry_id), _job(fields), takeover
        return None

    async def _next_undelivered(self, stream: str) -> int | None:
        groups = await self.client.xinfo_groups(stream)
        group = next((g for g in groups if _text(g["name"]) == GROUP), None)
        if group is None:
            return None
        entries = await self.client.xrange(
            stream, min=f"({_text(group['last-delivered-id'])}", max="+", count=1
        )
        return _ms(entries[0][0]) if entries else None

    async def _process(self, stream: str, entry_id: str, job_id: uuid.UUID, takeover: bool) -> None:
        try:
            await run_job(
                job_id,
                self.writer,
                self.events,
                max_attempts=self.settings.generation_max_attempts,
                topic_concurrency=self.settings.generation_topic_concurrency,
                global_limit=self._global_limit,
                takeover=takeover,
            )
            job = await GenerationJob.get_or_none(id=job_id)
            if job is not None and job.error_code == "ATTEMPTS_EXHAUSTED":
                tier = stream.rsplit(":", 1)[1]
                await self.client.xadd(
                    dead_stream(),
                    {
                        "job": str(job_id),
                        "tier": tier,
                        "attempts": job.attempts,
                        "reason": "ATTEMPTS_EXHAUSTED",
                        "at": int(time.time()),
                    },
                )
            await self.client.xack(stream, GROUP, entry_id)
            await self.client.xdel(stream, entry_id)
        except asyncio.CancelledError:
            # A user's cancel (the job is already marked): done with the entry. A shutdown:
            # leave it pending, so another worker resumes the job after the idle time.
            if not self._stopping.is_set():
                await asyncio.shield(self.client.xack(stream, GROUP, entry_id))
            raise
        except Exception:
            # An unexpected error (PostgreSQL gone while claiming or failing the job, say): the
            # job's state is unknown, so the entry is neither acknowledged (the job would be
            # lost) nor kept fresh (no one would ever take it over). Left idle, it is claimed
            # again after `generation_claim_idle_seconds`, by any worker, as a takeover: the
            # attempt count then ends it failed once its attempts are spent.
            self._abandoned.add(entry_id)
            log.exception("worker %s: job %s crashed; released for takeover", self.name, job_id)
        finally:
            self._running.pop(job_id, None)
            self._slots.release()

    async def _keep_alive(self) -> None:
        """Reset the idle time of the entries this worker holds, so none is taken over."""
        interval = max(self.idle_ms / 3000, 0.2)
        while not self._stopping.is_set():
            await asyncio.sleep(interval)
            try:
                await self._renew()
            except REDIS_TROUBLE as error:  # the consume loop restores groups; keep trying
                log.warning("worker %s: could not renew its entries (%s)", self.name, error)

    async def _renew(self) -> None:
        for tier in TIERS:
            stream = _stream(tier)
            pending = await self.client.xpending_range(
                stream, GROUP, min="-", max="+", count=1000, consumername=self.name
            )
            ids = [
                p["message_id"] for p in pending if _text(p["message_id"]) not in self._abandoned
            ]
            if ids:
                await self.client.xclaim(
                    stream, GROUP, self.name, min_idle_time=0, message_ids=ids, justid=True
                )

    async def _listen_for_cancels(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._cancel_loop()
            except REDIS_TROUBLE as error:
                # Pub/sub does not resubscribe by itself after a lost connection: start over.
                # A cancel published meanwhile is still honoured: the job row says cancelled,
                # so the run cannot complete it (and stops at its next state change).
                log.warning("worker %s: cancel channel lost (%s); resubscribing", self.name, error)
                await asyncio.sleep(0.5)

    async def _cancel_loop(self) -> None:
        pubsub = self.subscriber.pubsub()
        await pubsub.subscribe(cancel_channel())
        try:
            while not self._stopping.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    continue
                with contextlib.suppress(ValueError):
                    task = self._running.get(uuid.UUID(_text(message["data"])))
                    if task is not None:
                        task.cancel()
        finally:
            await pubsub.aclose()

    async def _drain(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode_id(entry_id: Any) -> str:
    return _text(entry_id)


def _job(fields: dict[Any, Any]) -> uuid.UUID:
    return uuid.UUID(_text(fields.get(b"job") or fields.get("job")))
