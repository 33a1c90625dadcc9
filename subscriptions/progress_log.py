"""The event log of each job: append numbered events, read after a sequence number, follow.

The embedded default keeps a bounded ring per job in this process. The Redis log (production)
keeps a capped stream per job so a subscriber that reconnects resumes without a gap.

Live transports do not call `follow()`: they go through `subscriptions.hub.ProgressHub`, which
reads each job's log once per wake-up and fans the events out to every local subscriber.
`follow()` stays for scripts and tests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from subscriptions.events import ProgressEvent

Unwatch = Callable[[], None]


class ProgressLog(Protocol):
    async def append(self, job_id: uuid.UUID, type: str, **fields: Any) -> ProgressEvent: ...

    async def read(self, job_id: uuid.UUID, after: int = 0) -> list[ProgressEvent]: ...

    def follow(self, job_id: uuid.UUID, after: int = 0) -> AsyncIterator[ProgressEvent]: ...

    async def close(self) -> None: ...


class ReadableLog(Protocol):
    """What the hub needs of a log: bounded reads and the newest event kept."""

    async def read(
        self, job_id: uuid.UUID, after: int = 0, limit: int | None = None
    ) -> list[ProgressEvent]: ...

    async def last(self, job_id: uuid.UUID) -> ProgressEvent | None: ...

    async def tail(self, job_id: uuid.UUID, count: int) -> list[ProgressEvent]:
        """The newest `count` events kept, oldest first."""


class _JobRing:
    __slots__ = ("events", "finished_at", "last_seq", "watchers")

    def __init__(self, capacity: int) -> None:
        self.events: deque[ProgressEvent] = deque(maxlen=capacity)
        self.last_seq = 0
        self.finished_at: float | None = None
        self.watchers: set[Callable[[], None]] = set()


class InProcessProgressLog:
    """Rings of recent events per job, kept a while after the job ends, then dropped."""

    def __init__(self, capacity: int = 1000, keep_seconds: float = 3600, max_jobs: int = 10_000):
        self.capacity = capacity
        self.keep_seconds = keep_seconds
        self.max_jobs = max_jobs
        self._rings: OrderedDict[uuid.UUID, _JobRing] = OrderedDict()
        # Watchers of jobs that have no ring yet (a follower that came before the first event).
        self._early: dict[uuid.UUID, set[Callable[[], None]]] = {}

    def _ring(self, job_id: uuid.UUID) -> _JobRing:
        ring = self._rings.get(job_id)
        if ring is None:
            self._evict()
            ring = self._rings[job_id] = _JobRing(self.capacity)
            ring.watchers |= self._early.pop(job_id, set())
        return ring

    def _evict(self) -> None:
        now = time.monotonic()
        for job_id, ring in list(self._rings.items()):
            expired = ring.finished_at is not None and now - ring.finished_at > self.keep_seconds
            if (expired or len(self._rings) >= self.max_jobs) and not ring.watchers:
                del self._rings[job_id]
            else:
                break

    async def append(self, job_id: uuid.UUID, type: str, **fields: Any) -> ProgressEvent:
        ring = self._ring(job_id)
        ring.last_seq += 1
        event = ProgressEvent(seq=ring.last_seq, type=type, job_id=job_id, **fields)
        ring.events.append(event)
        ring.finished_at = time.monotonic() if event.terminal else None
        for wake in list(ring.watchers):
            wake()
        return event

    async def read(
        self, job_id: uuid.UUID, after: int = 0, limit: int | None = None
    ) -> list[ProgressEvent]:
        ring = self._rings.get(job_id)
        if ring is None:
            return []
        events = [event for event in ring.events if event.seq > after]
        return events[:limit] if limit is not None else events

    async def last(self, job_id: uuid.UUID) -> ProgressEvent | None:
        ring = self._rings.get(job_id)
        return ring.events[-1] if ring is not None and ring.events else None

    async def tail(self, job_id: uuid.UUID, count: int) -> list[ProgressEvent]:
        ring = self._rings.get(job_id)
        return list(ring.events)[-count:] if ring is not None else []

    def watch(self, job_id: uuid.UUID, wake: Callable[[], None]) -> Unwatch:
        """Call `wake()` after every append to the job's log, until the returned unwatch."""
        ring = self._rings.get(job_id)
        watchers = ring.watchers if ring is not None else self._early.setdefault(job_id, set())
        watchers.add(wake)

        def unwatch() -> None:
            watchers.discard(wake)
            if not watchers and self._early.get(job_id) is watchers:
                del self._early[job_id]

        return unwatch

    async def follow(self, job_id: uuid.UUID, after: int = 0) -> AsyncIterator[ProgressEvent]:
        """Every event after `after`, then new ones as they come, until a terminal one."""
        changed = asyncio.Event()
        unwatch = self.watch(job_id, changed.set)
        seen = after
        try:
            while True:
                changed.clear()
                for event in await self.read(job_id, seen):
                    seen = event.seq
                    yield event
                    if event.terminal:
                        return
                await changed.wait()
        finally:
            unwatch()

    async def close(self) -> None:
        self._rings.clear()
        self._early.clear()
