"""The lifecycle of a generation job: request, claim, progress, finish, cancel, retry.

The database holds every state; queues and event logs only carry work and news about it. Each
transition checks the state it expects inside a transaction, so a job cancelled while a worker
writes it is never flipped to `succeeded`, and no reader ever sees half a course.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Subquery
from tortoise.transactions import in_transaction

from ai.writer import CourseRequest, CourseWriter, Outline, Requester, TopicContent, Usage
from generation.requests import parse_request
from models import Course, CourseLevel, CourseStatus, GenerationJob, JobStatus, Subject, Topic, User
from observability import metrics
from services import model_usage, scopes
from services.accounts import Viewer
from services.course_reads import courses_by_ids
from services.errors import DomainError, ErrorCode, invalid, not_found
from services.permissions import visible_courses_q
from services.ranks import rank_after
from services.rate_limits import RateLimits
from services.records import CourseRecord
from services.validation import clean_text
from subscriptions.progress_log import ProgressLog

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
# The error code of a job failed for having been interrupted too often: a dead letter.
EXHAUSTED = "ATTEMPTS_EXHAUSTED"
FINISHED = (JobStatus.FAILED, JobStatus.CANCELLED)


class JobQueue(Protocol):
    """Where jobs wait for a worker; also how a running job is told to stop."""

    async def enqueue(self, job_id: uuid.UUID, tier: str) -> None: ...

    async def cancel(self, job_id: uuid.UUID) -> None: ...


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    job_id: uuid.UUID
    course_id: uuid.UUID
    attempt: int
    request: CourseRequest
    requester: Requester


def _now() -> datetime:
    return datetime.now(UTC)


async def request_generation(
    viewer: Viewer,
    data: dict[str, Any],
    idempotency_key: str | None,
    queue: JobQueue,
    log: ProgressLog,
    limits: RateLimits,
    rate: str,
    writer: CourseWriter,
    course_id: uuid.UUID | None = None,
) -> tuple[GenerationJob, CourseRecord | None]:
    """Create the course (status generating) and its queued job; return both at once.

    The course is returned as created: by the time a reader looks, the job may be done.
    `course_id`: a client-made id for the course (offline clients, sync).
    """
    request = parse_request(data)
    key = clean_text(idempotency_key) if idempotency_key is not None else None
    if key is not None and not 1 <= len(key) <= 128:
        raise invalid("idempotencyKey: 1 to 128 characters.", field="idempotencyKey")
    if key and (existing := await _by_key(viewer.id, key)):
        return existing, await _course_of(viewer.id, existing)
    # Counted only for new work: a retried request (same key) is answered above for free.
    await limits.hit("generate-course", rate, str(viewer.id))
    left = await writer.remaining_budget(Requester(user_id=viewer.id, tier=viewer.tier.value))
    if left is not None and left <= 0:
        raise DomainError(
            ErrorCode.BUDGET_EXCEEDED,
            "You have used up your course-writing budget for now; it renews daily and monthly.",
        )
    try:
        async with scopes.transaction():
            course = await Course.create(
                id=course_id or uuid.uuid4(),
                owner_id=viewer.id,
                title=request.topic,
                description=f"A {request.level} course for {request.audience}.",
                level=CourseLevel(request.level),
                language=request.language,
                status=CourseStatus.GENERATING,
            )
            job = await GenerationJob.create(
                course_id=course.id,
                requester_id=viewer.id,
                request=dataclasses.asdict(request),
                idempotency_key=key,
            )
            await _stamp_course(course.id)
    except IntegrityError:
        # The same key raced in from a retry: the first request's job is the answer.
        if key and (existing := await _by_key(viewer.id, key)):
            return existing, await _course_of(viewer.id, existing)
        raise
    await log.append(job.id, "queued", progress=0.0, course_id=course.id)
    await queue.enqueue(job.id, viewer.tier)
    return job, CourseRecord(**{name: getattr(course, name) for name in CourseRecord.FIELDS})


async def _stamp_course(
    course_id: uuid.UUID, subjects: list[Subject] | None = None, topics: list[Topic] | None = None
) -> None:
    """Stamp the course's sync scope (inside the caller's transaction)."""
    course = await Course.get(id=course_id)
    put = [("course", course.id, scopes.course_data(course))]
    put += [("subject", s.id, scopes.subject_data(s)) for s in subjects or []]
    put += [("topic", t.id, scopes.topic_data(t)) for t in topics or []]
    await scopes.stamp(scopes.course_scope(course_id), put=put)


async def _course_of(viewer_id: uuid.UUID, job: GenerationJob) -> CourseRecord | None:
    return (await courses_by_ids(viewer_id, [job.course_id])).get(job.course_id)


async def _by_key(user_id: uuid.UUID, key: str) -> GenerationJob | None:
    return await GenerationJob.get_or_none(requester_id=user_id, idempotency_key=key)


async def visible_job(viewer_id: uuid.UUID, job_id: uuid.UUID) -> GenerationJob:
    """The job if the viewer may see its course; NOT_FOUND otherwise."""
    visible = Subquery(Course.filter(visible_courses_q(viewer_id)).values("id"))
    job = await GenerationJob.filter(id=job_id, course_id__in=visible).first()
    if job is None:
        raise not_found("generation job", field="jobId")
    return job


async def _own_job_locked(viewer: Viewer, job_id: uuid.UUID, verb: str) -> GenerationJob:
    """The viewer's own job, row-locked for the caller's transaction."""
    job = await visible_job(viewer.id, job_id)
    job = await GenerationJob.filter(id=job.id).select_for_update().get()
    if job.requester_id != viewer.id:
        raise DomainError(ErrorCode.FORBIDDEN, f"Only who asked for this course may {verb} it.")
    return job


async def cancel_generation(
    viewer: Viewer, job_id: uuid.UUID, queue: JobQueue, log: ProgressLog
) -> GenerationJob:
    async with scopes.transaction():
        job = await _own_job_locked(viewer, job_id, "cancel")
        if job.status not in ACTIVE:
            raise invalid(f"The job has already {job.status.value}.", field="jobId")
        job.status = JobStatus.CANCELLED
        job.finished_at = _now()
        await job.save(update_fields=["status", "finished_at"])
        await Course.filter(id=job.course_id).update(
            status=CourseStatus.FAILED, version=F("version") + 1, updated_at=_now()
        )
        await _stamp_course(job.course_id)
    await queue.cancel(job.id)
    metrics.JOB_OUTCOMES.labels("cancelled").inc()
    await log.append(job.id, "cancelled", progress=job.progress, course_id=job.course_id)
    return job


async def retry_generation(
    viewer: Viewer, job_id: uuid.UUID, queue: JobQueue, log: ProgressLog
) -> GenerationJob:
    async with scopes.transaction():
        job = await _own_job_locked(viewer, job_id, "retry")
        if job.status not in FINISHED:
            raise invalid("Only a failed or cancelled job can be retried.", field="jobId")
        await GenerationJob.filter(id=job.id).update(
            status=JobStatus.QUEUED,
            attempts=0,
            error_code=None,
            error_message=None,
            stage=None,
            progress=0.0,
            finished_at=None,
        )
        await job.refresh_from_db()
        await Course.filter(id=job.course_id).update(
            status=CourseStatus.GENERATING, version=F("version") + 1, updated_at=_now()
        )
        await _stamp_course(job.course_id)
    await log.append(job.id, "queued", progress=0.0, course_id=job.course_id)
    await queue.enqueue(job.id, viewer.tier)
    return job


async def claim(
    job_id: uuid.UUID, max_attempts: int, *, takeover: bool = False
) -> ClaimedJob | None:
    """Take a queued job for this worker; None if it is not to run.

    A `running` job is taken only as a `takeover` (its worker is known dead: an idle entry
    claimed from it, or a restart of the single embedded process); otherwise the delivery is
    a duplicate of a job that is being worked on. The attempt number returned fences the run:
    only the latest attempt may finish the job.
    """
    async with in_transaction():
        job = await GenerationJob.filter(id=job_id).select_for_update().first()
        if job is None or job.status not in ACTIVE:
            return None
        if job.status is JobStatus.RUNNING and not takeover:
            return None
        if job.attempts >= max_attempts:
            exhausted = True
        else:
            exhausted = False
            job.status = JobStatus.RUNNING
            job.attempts += 1
            job.started_at = job.started_at or _now()
            await job.save(update_fields=["status", "attempts", "started_at"])
    if exhausted:
        await fail(
            job_id,
            EXHAUSTED,
            f"The job was interrupted {job.attempts} times; it will not be tried again.",
            Usage(),
        )
        return None
    requester = await User.get(id=job.requester_id).only("id", "tier")
    return ClaimedJob(
        job_id=job.id,
        course_id=job.course_id,
        attempt=job.attempts,
        request=CourseRequest(**job.request),
        requester=Requester(user_id=requester.id, tier=requester.tier.value),
    )


async def set_stage(job_id: uuid.UUID, stage: str, progress: float) -> None:
    await GenerationJob.filter(id=job_id, status=JobStatus.RUNNING).update(
        stage=stage, progress=progress
    )


def _usage_fields(usage: Usage) -> dict[str, Any]:
    return {
        "tokens_in": F("tokens_in") + usage.tokens_in,
        "tokens_out": F("tokens_out") + usage.tokens_out,
        "cost_usd": F("cost_usd") + usage.cost_usd.quantize(Decimal("0.000001")),
    }


async def _merge_models(job_id: uuid.UUID, usage: Usage) -> None:
    if not usage.models:
        return
    job = await GenerationJob.get(id=job_id).only("id", "models_used", "requester_id")
    merged = sorted(set(job.models_used) | usage.models)
    await GenerationJob.filter(id=job_id).update(models_used=merged)
    # The operator's ledger (spend per user and day), in the caller's transaction: it and the
    # job's own totals are booked together or not at all.
    await model_usage.book(job.requester_id, usage.by_model)


async def complete(
    claimed: ClaimedJob, outline: Outline, contents: list[list[TopicContent]], usage: Usage
) -> bool:
    """Write the whole syllabus and flip the course to ready, in one transaction.

    False when the job stopped being ours meanwhile (cancelled): nothing is written.
    """
    async with scopes.transaction():
        job = await GenerationJob.filter(id=claimed.job_id).select_for_update().first()
        if job is None or job.status is not JobStatus.RUNNING or job.attempts != claimed.attempt:
            return False  # cancelled, or taken over by a later attempt meanwhile
        subjects: list[Subject] = []
        topics: list[Topic] = []
        subject_rank: str | None = None
        for subject_outline, subject_contents in zip(outline.subjects, contents, strict=True):
            subject_rank = rank_after(subject_rank)
            subject = Subject(
                id=uuid.uuid4(),
                course_id=claimed.course_id,
                rank=subject_rank,
                title=subject_outline.title,
                summary=subject_outline.summary,
            )
            subjects.append(subject)
            topic_rank: str | None = None
            for title, content in zip(subject_outline.topics, subject_contents, strict=True):
                topic_rank = rank_after(topic_rank)
                topics.append(
                    Topic(
                        id=uuid.uuid4(),
                        subject_id=subject.id,
                        course_id=claimed.course_id,
                        rank=topic_rank,
                        title=title[:200],
                        objectives=content.objectives,
                        content=content.content,
                        estimated_minutes=content.estimated_minutes,
                    )
                )
        await Subject.bulk_create(subjects, batch_size=500)
        await Topic.bulk_create(topics, batch_size=500)
        await Course.filter(id=claimed.course_id).update(
            status=CourseStatus.READY, version=F("version") + 1, updated_at=_now()
        )
        await GenerationJob.filter(id=claimed.job_id).update(
            status=JobStatus.SUCCEEDED,
            stage="saving",
            progress=1.0,
            finished_at=_now(),
            **_usage_fields(usage),
        )
        await _merge_models(claimed.job_id, usage)
        await _stamp_course(claimed.course_id, subjects, topics)
    metrics.JOB_OUTCOMES.labels("succeeded").inc()
    return True


async def fail(
    job_id: uuid.UUID, code: str, message: str, usage: Usage, attempt: int | None = None
) -> bool:
    """Mark an active job failed (its course too); False if it had already ended.

    With `attempt`, only while that attempt is still the job's latest.
    """
    async with scopes.transaction():
        job = await GenerationJob.filter(id=job_id).select_for_update().first()
        if job is None or job.status not in ACTIVE:
            return False
        if attempt is not None and job.attempts != attempt:
            return False
        await GenerationJob.filter(id=job_id).update(
            status=JobStatus.FAILED,
            error_code=code,
            error_message=message[:2000],
            finished_at=_now(),
            **_usage_fields(usage),
        )
        await _merge_models(job_id, usage)
        await Course.filter(id=job.course_id).update(
            status=CourseStatus.FAILED, version=F("version") + 1, updated_at=_now()
        )
        await _stamp_course(job.course_id)
    metrics.JOB_OUTCOMES.labels("exhausted" if code == EXHAUSTED else "failed").inc()
    return True


async def book_usage(job_id: uuid.UUID, usage: Usage) -> None:
    """Keep what an interrupted attempt spent (a cancelled or lost run still cost money)."""
    async with in_transaction():
        await GenerationJob.filter(id=job_id).update(**_usage_fields(usage))
        await _merge_models(job_id, usage)


async def unfinished_jobs() -> list[tuple[uuid.UUID, str, JobStatus]]:
    """Jobs queued or left running, oldest first, with their requester's tier."""
    rows = (
        await GenerationJob.filter(status__in=ACTIVE)
        .order_by("created_at")
        .values("id", "status", "requester__tier")
    )
    return [(row["id"], str(row["requester__tier"]), JobStatus(row["status"])) for row in rows]
