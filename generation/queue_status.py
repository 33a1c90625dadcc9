"""How deep the job queue is, for the operator and for `/metrics`: what waits in the queue
itself (the embedded runner's priority queue, or the Redis streams' undelivered entries), by
tier, beside what the database says is queued, running and dead-lettered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from generation import dead_letters
from models import GenerationJob, JobStatus
from services.errors import DomainError, ErrorCode

TIERS = ("premium", "standard", "free")


@dataclass(frozen=True)
class QueueStatus:
    backend: str  # "in-process" or "redis"
    waiting_by_tier: dict[str, int]
    queued_jobs: int
    running_jobs: int
    dead_lettered: int

    @property
    def waiting(self) -> int:
        return sum(self.waiting_by_tier.values())


async def waiting_by_tier(queue: Any) -> dict[str, int]:
    """Entries waiting in the queue, for every tier (0 where none)."""
    try:
        waiting = await queue.waiting_by_tier()
    except RedisError as error:
        raise DomainError(
            ErrorCode.TEMPORARILY_UNAVAILABLE, "The job queue cannot be reached; try again soon."
        ) from error
    return {tier: int(waiting.get(tier, 0)) for tier in TIERS}


async def queue_status(queue: Any) -> QueueStatus:
    waiting = await waiting_by_tier(queue)
    return QueueStatus(
        backend="redis" if hasattr(queue, "client") else "in-process",
        waiting_by_tier=waiting,
        queued_jobs=await GenerationJob.filter(status=JobStatus.QUEUED).count(),
        running_jobs=await GenerationJob.filter(status=JobStatus.RUNNING).count(),
        dead_lettered=await dead_letters.count(),
    )
