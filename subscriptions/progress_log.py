"""The event log of each job: append numbered events, read after a sequence number, follow.

The embedded default keeps a bounded ring per job in this process. The Redis log (production)
keeps a capped stream per job so a subscriber that reconnects resumes without a gap.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, Protocol

from subscriptions.events import ProgressEvent


class ProgressLog(Protocol):
    async def append(self, job_id: uuid.UUID, type: str, **fields: Any) -> ProgressEvent: ...

    async def read(self, job_id: uuid.UUID, after: int = 0) -> list[ProgressEvent]: ...

    def follow(self, job_id: uuid.UUID, after: int = 0) -> AsyncIterator[ProgressEvent]: ...

    async def close(self) -> None: ...


class _JobRing:
    __slots__ = ("changed", "events", "finished_at", "last_seq")

    def __init__(self, capacity: int) -> None:
        self.events: deque[ProgressEvent] = deque(maxlen=capacity)
        self.last_seq = 0
        self.changed = asyncio.Condition()
        self.finished_at: float | None = None


def _newer_than(ring: _JobRing, seq: int) -> bool:
    return ring.last_seq > seq


class InProcessProgressLog:
    """Rings of recent events per job, kept a while after the job ends, then dropped."""

    def __init__(self, capacity: int = 1000, keep_seconds: float = 3600, max_jobs: int = 10_000):
        self.capacity = capacity
        self.keep_seconds = keep_seconds
        self.max_jobs = max_jobs
        self._rings: OrderedDict[uuid.UUID, _JobRing] = OrderedDict()

    def _ring(self, job_id: uuid.UUID) -> _JobRing:
        ring = self._rings.get(job_id)
        if ring is None:
            self._evict()
            ring = self._rings[job_id] = _JobRing(self.capacity)
        return ring

    def _evict(self) -> None:
        now = time.monotonic()
        for job_id, ring in list(self._rings.items()):
            expired = ring.finished_at is not None and now - ring.finished_at > self.keep_seconds
            if expired or len(self._rings) >= self.max_jobs:
                del self._rings[job_id]
            else:
                break

    async def append(self, job_id: uuid.UUID, type: str, **fields: Any) -> ProgressEvent:
        ring = self._ring(job_id)
        ring.last_seq += 1
        event = ProgressEvent(seq=ring.last_seq, type=type, job_id=job_id, **fields)
        ring.events.append(event)
        if event.terminal:
            ring.finished_at = time.monotonic()
        async with ring.changed:
            ring.changed.notify_all()
        return event

    async def read(self, job_id: uuid.UUID, after: int = 0) -> list[ProgressEvent]:
        ring = self._rings.get(job_id)
        if ring is None:
            return []
        return [event for event in ring.events if event.seq > after]

    async def follow(self, job_id: uuid.UUID, after: int = 0) -> AsyncIterator[ProgressEvent]:
        """Every event after `after`, then new ones as they come, until a terminal one."""
        ring = self._ring(job_id)
        seen = after
        while True:
            async with ring.changed:
                await ring.changed.wait_for(partial(_newer_than, ring, seen))
            for event in [e for e in ring.events if e.seq > seen]:
                seen = event.seq
                yield event
                if event.terminal:
                    return

    async def close(self) -> None:
        self._rings.clear()
