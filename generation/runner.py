"""The embedded job runner: worker tasks inside the web process, fed by a priority queue.

Priority by tier with aging: a job's key is its arrival time minus a head start for its tier,
so premium jobs go first, yet a free job that has waited longer than the head start is served
before a fresh premium one: nobody starves.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import Counter

from ai.writer import CourseWriter
from generation import jobs
from generation.pipeline import run_job
from settings import Settings
from subscriptions.progress_log import ProgressLog

log = logging.getLogger("coursegen.generation")

TIER_HEAD_START_SECONDS = {"premium": 120.0, "standard": 60.0, "free": 0.0}


class InProcessJobRunner:
    def __init__(self, settings: Settings, writer: CourseWriter, events: ProgressLog) -> None:
        self.settings = settings
        self.writer = writer
        self.events = events
        # (aged key, arrival order, job id, whether it is a takeover of an interrupted run,
        # tier)
        self._queue: asyncio.PriorityQueue[tuple[float, int, uuid.UUID, bool, str]] = (
            asyncio.PriorityQueue()
        )
        self._waiting: Counter[str] = Counter()
        self._order = itertools.count()
        self._workers: list[asyncio.Task[None]] = []
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._global_limit = asyncio.Semaphore(settings.generation_global_concurrency)

    async def start(self) -> None:
        """Start the workers and take back the jobs a previous process left unfinished."""
        # This is the only process of an embedded deployment: whatever it left running died
        # with it, so those runs are taken over.
        for job_id, tier, _ in await jobs.unfinished_jobs():
            await self.enqueue(job_id, tier, takeover=True)
        for number in range(self.settings.generation_workers):
            self._workers.append(asyncio.create_task(self._work(), name=f"generation-{number}"))

    async def enqueue(self, job_id: uuid.UUID, tier: str, *, takeover: bool = False) -> None:
        key = time.monotonic() - TIER_HEAD_START_SECONDS.get(tier, 0.0)
        await self._queue.put((key, next(self._order), job_id, takeover, str(tier)))
        self._waiting[str(tier)] += 1

    async def cancel(self, job_id: uuid.UUID) -> None:
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def waiting_by_tier(self) -> dict[str, int]:
        """Jobs waiting for a worker, by tier."""
        return {tier: count for tier, count in self._waiting.items() if count > 0}

    async def stop(self) -> None:
        """Stop the workers; interrupted jobs stay `running` and resume at the next start."""
        for task in [*self._running.values(), *self._workers]:
            task.cancel()
        await asyncio.gather(*self._running.values(), *self._workers, return_exceptions=True)
        self._workers.clear()
        self._running.clear()

    async def _work(self) -> None:
        while True:
            _, _, job_id, takeover, tier = await self._queue.get()
            self._waiting[tier] -= 1
            task = asyncio.create_task(
                run_job(
                    job_id,
                    self.writer,
                    self.events,
                    max_attempts=self.settings.generation_max_attempts,
                    topic_concurrency=self.settings.generation_topic_concurrency,
                    global_limit=self._global_limit,
                    takeover=takeover,
                )
            )
            self._running[job_id] = task
            try:
                # wait() does not raise when the job task is cancelled (a user's cancel);
                # it raises only when this worker itself is cancelled (shutdown).
                await asyncio.wait({task})
                if not task.cancelled() and task.exception() is not None:
                    log.error("job %s crashed", job_id, exc_info=task.exception())
            finally:
                self._running.pop(job_id, None)
                self._queue.task_done()
