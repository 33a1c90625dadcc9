"""One run of a job: outline, then every topic in parallel within bounds, then one write.

Progress goes to the job's event log at each step. A failure of any topic (after the router's
own retries and fallbacks) fails the run; cancellation stops every in-flight call at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from ai.errors import AIError
from ai.writer import CourseWriter, Outline, TopicContent, Usage
from generation import jobs
from services.errors import DomainError
from subscriptions.progress_log import ProgressLog

log = logging.getLogger("coursegen.generation")

# Share of the progress bar each stage ends at.
OUTLINE_DONE = 0.10
TOPICS_DONE = 0.95


class GenerationFailed(Exception):
    """A run failed for a reason the user can be told (`code`, `message`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def run_job(
    job_id: uuid.UUID,
    writer: CourseWriter,
    events: ProgressLog,
    *,
    max_attempts: int,
    topic_concurrency: int,
    global_limit: asyncio.Semaphore,
    takeover: bool = False,
) -> None:
    claimed = await jobs.claim(job_id, max_attempts, takeover=takeover)
    if claimed is None:
        return
    usage = Usage()
    course_id = claimed.course_id
    await events.append(
        job_id, "started", progress=0.0, course_id=course_id, message=f"attempt {claimed.attempt}"
    )
    try:
        await jobs.set_stage(job_id, "outline", 0.0)
        await events.append(job_id, "stage", progress=0.0, stage="outline", course_id=course_id)
        async with global_limit:
            outline = await writer.write_outline(claimed.request, claimed.requester, usage)
        await events.append(
            job_id,
            "outline_ready",
            progress=OUTLINE_DONE,
            stage="outline",
            course_id=course_id,
            data={"subjects": [{"title": s.title, "topics": s.topics} for s in outline.subjects]},
        )
        await jobs.set_stage(job_id, "topics", OUTLINE_DONE)
        contents = await _write_topics(
            claimed, outline, writer, events, usage, topic_concurrency, global_limit
        )
        await jobs.set_stage(job_id, "saving", TOPICS_DONE)
        await events.append(
            job_id, "stage", progress=TOPICS_DONE, stage="saving", course_id=course_id
        )
        if await jobs.complete(claimed, outline, contents, usage):
            await events.append(
                job_id, "completed", progress=1.0, stage="saving", course_id=course_id
            )
    except asyncio.CancelledError:
        # Cancelled by the user (the job is already marked) or by a shutdown (it stays
        # `running` and is resumed at the next start). Either way keep what was spent.
        await asyncio.shield(jobs.book_usage(job_id, usage))
        raise
    except (GenerationFailed, DomainError, AIError) as error:
        code = error.code.value if isinstance(error, DomainError) else error.code
        await _fail(claimed, events, code, error.message, usage)
    except Exception:
        log.exception("generation job %s failed unexpectedly", job_id)
        message = "The course could not be written. It has been logged; try again later."
        await _fail(claimed, events, "GENERATION_FAILED", message, usage)


async def _fail(
    claimed: jobs.ClaimedJob, events: ProgressLog, code: str, message: str, usage: Usage
) -> None:
    job_id, course_id = claimed.job_id, claimed.course_id
    if await jobs.fail(job_id, code, message, usage, attempt=claimed.attempt):
        await events.append(
            job_id,
            "failed",
            progress=0.0,
            course_id=course_id,
            message=message,
            data={"code": code},
        )


async def _write_topics(
    claimed: jobs.ClaimedJob,
    outline: Outline,
    writer: CourseWriter,
    events: ProgressLog,
    usage: Usage,
    topic_concurrency: int,
    global_limit: asyncio.Semaphore,
) -> list[list[TopicContent]]:
    per_job = asyncio.Semaphore(topic_concurrency)
    work = [
        (s_index, t_index, subject.title, title)
        for s_index, subject in enumerate(outline.subjects)
        for t_index, title in enumerate(subject.topics)
    ]
    total = len(work)
    done = 0
    results: list[list[TopicContent | None]] = [[None] * len(s.topics) for s in outline.subjects]
    job_id, course_id = claimed.job_id, claimed.course_id

    async def write(index: int, s_index: int, t_index: int, subject: str, topic: str) -> None:
        nonlocal done
        async with per_job, global_limit:
            await events.append(
                job_id,
                "topic_started",
                progress=_progress(done, total),
                stage="topics",
                course_id=course_id,
                data={"subject": subject, "topic": topic, "index": index + 1, "total": total},
            )
            content = await writer.write_topic(
                claimed.request, subject, topic, claimed.requester, usage
            )
        results[s_index][t_index] = content
        done += 1
        await events.append(
            job_id,
            "topic_done",
            progress=_progress(done, total),
            stage="topics",
            course_id=course_id,
            message=f"{done} of {total}",
            data={"subject": subject, "topic": topic, "index": done, "total": total},
        )

    await events.append(
        job_id,
        "stage",
        progress=OUTLINE_DONE,
        stage="topics",
        course_id=course_id,
        data={"total": total},
    )
    # A TaskGroup cancels the siblings of a failed topic: no call outlives a failed run.
    try:
        async with asyncio.TaskGroup() as group:
            for index, (s_index, t_index, subject, topic) in enumerate(work):
                group.create_task(write(index, s_index, t_index, subject, topic))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None  # the first topic that failed fails the run
    return [[content for content in subject if content is not None] for subject in results]


def _progress(done: int, total: int) -> float:
    return round(OUTLINE_DONE + (TOPICS_DONE - OUTLINE_DONE) * done / max(total, 1), 4)
