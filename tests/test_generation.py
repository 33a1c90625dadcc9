"""Course generation end to end on the embedded runner and the offline writer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from ai.offline_writer import OfflineCourseWriter
from generation.runner import InProcessJobRunner
from models import Course, GenerationJob, JobStatus, Subject, Topic, User, UserTier
from subscriptions.progress_log import InProcessProgressLog
from tests.support import gql, sign_up

GENERATE = """
mutation($input: GenerateCourseInput!, $key: String) {
  generateCourse(input: $input, idempotencyKey: $key) {
    __typename
    ... on GenerateCourseSuccess { job { id status } course { id status title } }
    ... on UserError { code message field }
  }
}
"""
JOB = """
query($id: ID!) {
  generationJob(id: $id) {
    id status stage progress attempts error { code message } models tokensIn tokensOut cost
    startedAt finishedAt course { id status subjects { title topics { title content } } }
  }
}
"""
CANCEL = """
mutation($id: ID!) {
  cancelGeneration(jobId: $id) {
    __typename ... on CancelGenerationSuccess { job { status } } ... on UserError { code }
  }
}
"""
RETRY = """
mutation($id: ID!) {
  retryGeneration(jobId: $id) {
    __typename ... on RetryGenerationSuccess { job { status } } ... on UserError { code }
  }
}
"""


@pytest.fixture
def slow_writer(app: Starlette) -> Iterator[OfflineCourseWriter]:
    """Make the running app's writer take 0.3 s a call for the length of one test."""
    worker = app.state.job_worker
    original = worker.writer
    worker.writer = OfflineCourseWriter(latency_seconds=0.3)
    try:
        yield worker.writer
    finally:
        worker.writer = original


async def _generate(
    client: httpx.AsyncClient, token: str, key: str | None = None, **fields: Any
) -> dict[str, Any]:
    data = {"topic": "SQL for analysts", "subjectCount": 3, "topicsPerSubject": 4, **fields}
    body = await gql(client, GENERATE, {"input": data, "key": key}, token=token)
    return dict(body["data"]["generateCourse"])


async def _wait(client: httpx.AsyncClient, token: str, job_id: str, *states: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        job = (await gql(client, JOB, {"id": job_id}, token=token))["data"]["generationJob"]
        if job["status"] in states:
            return dict(job)
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}")


async def test_a_requested_course_is_written_and_stored_whole(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    user = await sign_up(client)
    result = await _generate(client, user.token)
    assert result["__typename"] == "GenerateCourseSuccess"
    assert result["job"]["status"] == "QUEUED"
    assert result["course"]["status"] == "GENERATING"
    job = await _wait(client, user.token, result["job"]["id"], "SUCCEEDED")
    assert job["course"]["status"] == "READY"
    assert [len(s["topics"]) for s in job["course"]["subjects"]] == [4, 4, 4]
    assert all(
        "SQL for analysts" in t["content"] for s in job["course"]["subjects"] for t in s["topics"]
    )
    assert job["models"] == ["offline-course-writer"]
    assert job["tokensIn"] > 0 and job["tokensOut"] > 0 and job["cost"] == 0
    assert job["attempts"] == 1 and job["progress"] == 1 and job["finishedAt"]

    events = await app.state.runtime.events.read(uuid.UUID(result["job"]["id"]))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    types = [e.type for e in events]
    assert types[:4] == ["queued", "started", "stage", "outline_ready"]
    assert types.count("topic_started") == 12 and types.count("topic_done") == 12
    assert types[-1] == "completed" and events[-1].course_id == uuid.UUID(result["course"]["id"])
    progress = [e.progress for e in events if e.type == "topic_done"]
    assert progress == sorted(progress)


async def test_the_same_idempotency_key_returns_the_same_job(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    first, second = await asyncio.gather(
        _generate(client, user.token, key="abc-1"), _generate(client, user.token, key="abc-1")
    )
    assert first["job"]["id"] == second["job"]["id"]
    third = await _generate(client, user.token, key="abc-2")
    assert third["job"]["id"] != first["job"]["id"]
    assert await GenerationJob.filter(requester_id=user.id).count() == 2
    assert await Course.filter(owner_id=user.id).count() == 2


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"topic": "ab"}, "input.topic"),
        ({"topic": "x" * 201}, "input.topic"),
        ({"subjectCount": 13}, "input.subjectCount"),
        ({"topicsPerSubject": 0}, "input.topicsPerSubject"),
        ({"language": "en; DROP"}, "input.language"),
        ({"notes": "n" * 2001}, "input.notes"),
    ],
)
async def test_bad_requests_are_refused_and_change_nothing(
    client: httpx.AsyncClient, fields: dict[str, Any], field: str
) -> None:
    user = await sign_up(client)
    result = await _generate(client, user.token, **fields)
    assert result["__typename"] == "InvalidInputError"
    assert result["field"] == field
    assert await GenerationJob.all().count() == 0 and await Course.all().count() == 0


async def test_user_text_is_cleaned_of_control_characters(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    result = await _generate(client, user.token, topic="Rust\x00\x1b[31m ownership")
    assert result["course"]["title"] == "Rust[31m ownership"
    job = await GenerationJob.get(id=result["job"]["id"])
    assert job.request["topic"] == "Rust[31m ownership"


async def test_cancel_stops_the_run_and_writes_nothing(
    client: httpx.AsyncClient, slow_writer: OfflineCourseWriter
) -> None:
    user = await sign_up(client)
    result = await _generate(client, user.token)
    job_id, course_id = result["job"]["id"], result["course"]["id"]
    await _wait(client, user.token, job_id, "RUNNING")
    await asyncio.sleep(0.5)  # the outline is written; topics are in flight
    assert await Subject.filter(course_id=course_id).count() == 0  # never half a course
    started = time.monotonic()
    body = await gql(client, CANCEL, {"id": job_id}, token=user.token)
    assert body["data"]["cancelGeneration"]["job"]["status"] == "CANCELLED"
    job = await _wait(client, user.token, job_id, "CANCELLED")
    await asyncio.sleep(0.4)  # longer than one writer call: a survivor would have finished
    assert time.monotonic() - started < 2
    assert job["course"]["status"] == "FAILED"
    assert await Subject.filter(course_id=course_id).count() == 0
    assert await Topic.filter(course_id=course_id).count() == 0
    row = await GenerationJob.get(id=job_id)
    assert row.status is JobStatus.CANCELLED and row.tokens_in > 0  # what was spent is kept
    again = await gql(client, CANCEL, {"id": job_id}, token=user.token)
    assert again["data"]["cancelGeneration"]["code"] == "INVALID_INPUT"


async def test_a_cancelled_job_can_be_retried(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    await User.filter(id=user.id).update(tier=UserTier.FREE)
    result = await _generate(client, user.token, subjectCount=1, topicsPerSubject=1)
    job_id = result["job"]["id"]
    await GenerationJob.filter(id=job_id).update(status=JobStatus.CANCELLED)
    body = await gql(client, RETRY, {"id": job_id}, token=user.token)
    assert body["data"]["retryGeneration"]["job"]["status"] == "QUEUED"
    job = await _wait(client, user.token, job_id, "SUCCEEDED")
    assert job["course"]["status"] == "READY"


async def test_another_user_cannot_see_or_touch_a_job(client: httpx.AsyncClient) -> None:
    owner, stranger = await sign_up(client), await sign_up(client)
    result = await _generate(client, owner.token, subjectCount=1, topicsPerSubject=1)
    job_id = result["job"]["id"]
    body = await gql(client, JOB, {"id": job_id}, token=stranger.token)
    assert body["data"]["generationJob"] is None
    for mutation in (CANCEL, RETRY):
        body = await gql(client, mutation, {"id": job_id}, token=stranger.token)
        assert next(iter(body["data"].values()))["code"] == "NOT_FOUND"
    await _wait(client, owner.token, job_id, "SUCCEEDED")


async def test_unfinished_jobs_are_resumed_at_start_or_failed_when_exhausted(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    user = await sign_up(client)
    interrupted = await _generate(client, user.token, subjectCount=1, topicsPerSubject=2)
    exhausted = await _generate(client, user.token, subjectCount=1, topicsPerSubject=2)
    await _wait(client, user.token, interrupted["job"]["id"], "SUCCEEDED")
    await _wait(client, user.token, exhausted["job"]["id"], "SUCCEEDED")
    # As a process killed mid-job leaves them: running, with attempts spent.
    await GenerationJob.filter(id=interrupted["job"]["id"]).update(
        status=JobStatus.RUNNING, attempts=1
    )
    await GenerationJob.filter(id=exhausted["job"]["id"]).update(
        status=JobStatus.RUNNING, attempts=3
    )
    await Subject.filter(
        course_id__in=[interrupted["course"]["id"], exhausted["course"]["id"]]
    ).delete()

    runner = InProcessJobRunner(app.state.settings, OfflineCourseWriter(), InProcessProgressLog())
    await runner.start()
    try:
        resumed = await _wait(client, user.token, interrupted["job"]["id"], "SUCCEEDED", "FAILED")
        failed = await _wait(client, user.token, exhausted["job"]["id"], "FAILED", "SUCCEEDED")
    finally:
        await runner.stop()
    assert resumed["status"] == "SUCCEEDED" and resumed["attempts"] == 2
    assert len(resumed["course"]["subjects"]) == 1
    assert failed["status"] == "FAILED" and failed["error"]["code"] == "ATTEMPTS_EXHAUSTED"
    assert failed["course"]["status"] == "FAILED"


async def test_priority_by_tier_with_aging(app: Starlette, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = InProcessJobRunner(app.state.settings, OfflineCourseWriter(), InProcessProgressLog())
    clock = [1000.0]
    monkeypatch.setattr("generation.runner.time.monotonic", lambda: clock[0])
    old_free, standard, premium, new_free = (uuid.uuid4() for _ in range(4))
    await runner.enqueue(old_free, "free")
    clock[0] += 130  # the free job has now waited longer than any head start
    await runner.enqueue(new_free, "free")
    await runner.enqueue(standard, "standard")
    await runner.enqueue(premium, "premium")
    order = [(await runner._queue.get())[2] for _ in range(4)]
    assert order == [old_free, premium, standard, new_free]


async def test_requests_beyond_the_tier_rate_are_refused(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)  # free tier: 5 requests an hour
    for n in range(5):
        result = await _generate(
            client, user.token, key=f"k{n}", subjectCount=1, topicsPerSubject=1
        )
        assert result["__typename"] == "GenerateCourseSuccess"
    again = await _generate(client, user.token, key="k0", subjectCount=1, topicsPerSubject=1)
    assert again["__typename"] == "GenerateCourseSuccess"  # a retry is not new work
    body = await gql(
        client,
        GENERATE.replace(
            "... on UserError { code message field }",
            "... on RateLimitedError { code retryAfter message }",
        ),
        {"input": {"topic": "One too many"}, "key": "k5"},
        token=user.token,
    )
    refused = body["data"]["generateCourse"]
    assert refused["code"] == "RATE_LIMITED" and 3500 <= refused["retryAfter"] <= 3600
    assert await GenerationJob.filter(requester_id=user.id).count() == 5
