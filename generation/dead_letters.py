"""Dead-lettered jobs, for the operator: jobs failed for having been interrupted too often
(ATTEMPTS_EXHAUSTED), listed and replayed the same way whichever queue runs them.

The database is the record in both ways to run: a dead letter is a job in state `failed` with
that code. The Redis queue also copies each one into its dead-letter stream (an audit trail
that a Redis restart loses); a replay removes the job's entries from it. Replaying is a state
change guarded in the database, so it happens once however often, and from however many
processes, it is asked for: the second replay finds the job no longer dead-lettered.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tortoise.expressions import F

from generation.jobs import EXHAUSTED, JobQueue, _now, _stamp_course
from models import Course, CourseStatus, GenerationJob, JobStatus, User
from services import scopes
from services.errors import not_found
from subscriptions.progress_log import ProgressLog

MAX_LISTED = 200


@dataclass(frozen=True)
class Replay:
    job: GenerationJob
    # False: the job was not dead-lettered (any more), e.g. an earlier replay re-queued it.
    requeued: bool


def _dead() -> dict[str, object]:
    return {"status": JobStatus.FAILED, "error_code": EXHAUSTED}


async def dead_letters(limit: int = 50) -> list[GenerationJob]:
    """The dead-lettered jobs, most recently failed first."""
    return await (
        GenerationJob.filter(**_dead())
        .order_by("-finished_at", "-created_at")
        .limit(max(1, min(limit, MAX_LISTED)))
    )


async def count() -> int:
    return await GenerationJob.filter(**_dead()).count()


async def replay(job_id: uuid.UUID, queue: JobQueue, log: ProgressLog) -> Replay:
    """Queue a dead-lettered job again with fresh attempts; NOT_FOUND for an unknown id."""
    async with scopes.transaction():
        job = await GenerationJob.filter(id=job_id).select_for_update().first()
        if job is None:
            raise not_found("generation job", field="jobId")
        if job.status is not JobStatus.FAILED or job.error_code != EXHAUSTED:
            return Replay(job, requeued=False)
        await GenerationJob.filter(id=job.id).update(
            status=JobStatus.QUEUED,
            attempts=0,
            error_code=None,
            error_message=None,
            stage=None,
            progress=0.0,
            finished_at=None,
        )
        await Course.filter(id=job.course_id).update(
            status=CourseStatus.GENERATING, version=F("version") + 1, updated_at=_now()
        )
        await _stamp_course(job.course_id)
        await job.refresh_from_db()
        requester = await User.get(id=job.requester_id).only("id", "tier")
    await log.append(job.id, "queued", progress=0.0, course_id=job.course_id)
    await queue.enqueue(job.id, requester.tier.value)
    forget = getattr(queue, "forget_dead_letter", None)
    if forget is not None:  # the Redis queue's audit stream
        await forget(job.id)
    return Replay(job, requeued=True)
