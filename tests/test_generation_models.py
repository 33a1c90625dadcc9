"""Generation through the AI router and the real `openai` client, against a fake
OpenAI-compatible server on loopback: billing, fallbacks, cancellation, budgets, bad output."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from ai.routed_writer import build_writer
from ai.writer import CourseWriter
from models import Course, GenerationJob, JobStatus, Subject, Topic
from settings import Settings
from tests.fake_openai import FAST_POLICY, FakeOpenAI, Step, endpoint, merge, running
from tests.support import gql, sign_up

GENERATE = """
mutation($input: GenerateCourseInput!) {
  generateCourse(input: $input) {
    __typename
    ... on GenerateCourseSuccess { job { id } course { id } }
    ... on UserError { code message }
  }
}
"""
CANCEL = "mutation($id: ID!) { cancelGeneration(jobId: $id) { __typename } }"


@pytest.fixture(scope="module")
async def fake_server() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    async with running() as served:
        yield served


@pytest.fixture
def fake(fake_server: tuple[FakeOpenAI, str]) -> FakeOpenAI:
    fake_server[0].reset()
    return fake_server[0]


def _use_models(
    app: Starlette, settings: Settings, models: list[dict[str, Any]], **policy: Any
) -> Iterator[CourseWriter]:
    # A prefix of its own: breakers, budgets and cached answers in Redis start empty.
    isolated = {"redis_prefix": f"test:gen:{uuid.uuid4().hex[:10]}", **policy}
    config = {"models": models, "policy": merge(FAST_POLICY, isolated)}
    configured = settings.model_copy(update={"models": json.dumps(config)})
    writer = build_writer(configured, app.state.runtime.redis)
    worker, runtime = app.state.job_worker, app.state.runtime
    saved = worker.writer, runtime.writer
    worker.writer = runtime.writer = writer
    try:
        yield writer
    finally:
        worker.writer, runtime.writer = saved


@pytest.fixture
async def two_models(
    app: Starlette, settings: Settings, fake_server: tuple[FakeOpenAI, str]
) -> AsyncIterator[CourseWriter]:
    url = fake_server[1]
    models = [
        endpoint("primary", url, quality={"outline": 0.9, "topic": 0.9}),
        endpoint("fallback", url, quality={"outline": 0.5, "topic": 0.5}),
    ]
    for writer in _use_models(app, settings, models):
        yield writer
        await writer.aclose()


async def _generate(client: httpx.AsyncClient, token: str, **fields: Any) -> dict[str, Any]:
    data = {"topic": "Compilers", "subjectCount": 2, "topicsPerSubject": 2, **fields}
    body = await gql(client, GENERATE, {"input": data}, token=token)
    return dict(body["data"]["generateCourse"])


async def _finished(job_id: str, limit: float = 20) -> GenerationJob:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job = await GenerationJob.get(id=job_id)
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("the job did not finish")


async def test_a_course_written_by_models_books_tokens_and_cost(
    client: httpx.AsyncClient, fake: FakeOpenAI, two_models: CourseWriter
) -> None:
    user = await sign_up(client)
    result = await _generate(client, user.token)
    job = await _finished(result["job"]["id"])
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    # The fake's outline has 2 subjects x 2 topics: 1 outline call + 4 topic calls.
    assert fake.hits["primary"] == 5 and fake.hits["fallback"] == 0
    assert job.models_used == ["primary"]
    assert job.tokens_in > 0 and job.tokens_out > 0 and job.cost_usd > 0
    assert await Topic.filter(course_id=result["course"]["id"]).count() == 4


async def test_a_failing_primary_falls_back_and_only_successes_are_billed(
    client: httpx.AsyncClient, fake: FakeOpenAI, two_models: CourseWriter
) -> None:
    fake.always("primary", Step(status=500))
    user = await sign_up(client)
    job = await _finished((await _generate(client, user.token))["job"]["id"])
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    assert job.models_used == ["fallback"]
    assert fake.hits["fallback"] == 5


async def test_cancel_closes_every_call_in_flight(
    app: Starlette,
    settings: Settings,
    client: httpx.AsyncClient,
    fake: FakeOpenAI,
    fake_server: tuple[FakeOpenAI, str],
) -> None:
    fake.script("primary", Step())  # the outline comes back...
    fake.always("primary", Step(delay=30))  # ...and every topic call hangs
    slow = {"timeouts": {"first_token": 60.0, "total": 120.0}}
    for writer in _use_models(app, settings, [endpoint("primary", fake_server[1])], **slow):
        try:
            await _cancel_in_flight(client, fake)
        finally:
            await writer.aclose()


async def _cancel_in_flight(client: httpx.AsyncClient, fake: FakeOpenAI) -> None:
    user = await sign_up(client)
    result = await _generate(client, user.token, subjectCount=2, topicsPerSubject=2)
    deadline = time.monotonic() + 10
    while fake.in_flight < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert fake.in_flight == 4
    started = time.monotonic()
    await gql(client, CANCEL, {"id": result["job"]["id"]}, token=user.token)
    while fake.disconnects.get("primary", 0) < 4 and time.monotonic() - started < 2:
        await asyncio.sleep(0.01)
    assert fake.disconnects["primary"] == 4
    assert time.monotonic() - started < 1
    job = await _finished(result["job"]["id"])
    assert job.status is JobStatus.CANCELLED
    assert await Subject.filter(course_id=result["course"]["id"]).count() == 0


async def test_output_that_never_validates_fails_the_job_with_its_code(
    client: httpx.AsyncClient, fake: FakeOpenAI, two_models: CourseWriter
) -> None:
    for model in ("primary", "fallback"):
        fake.always(model, Step(answer="this is not JSON at all"))
    user = await sign_up(client)
    result = await _generate(client, user.token)
    job = await _finished(result["job"]["id"])
    assert job.status is JobStatus.FAILED
    assert job.error_code == "AI_INVALID_OUTPUT"
    course = await Course.get(id=result["course"]["id"])
    assert course.status.value == "failed"


@pytest.mark.parametrize(
    ("daily_usd", "outcome"),
    [
        (0, "refused"),  # nothing left: refused at the request, nothing created
        (0.004, "failed"),  # less than one call's worst case: the job fails before any call
    ],
)
async def test_budgets_are_enforced_before_money_is_spent(
    app: Starlette,
    settings: Settings,
    client: httpx.AsyncClient,
    fake: FakeOpenAI,
    fake_server: tuple[FakeOpenAI, str],
    daily_usd: float,
    outcome: str,
) -> None:
    models = [endpoint("primary", fake_server[1])]
    budgets = {"budgets": {"free": {"daily_usd": daily_usd, "monthly_usd": 1}}}
    for writer in _use_models(app, settings, models, **budgets):
        try:
            user = await sign_up(client)
            result = await _generate(client, user.token, subjectCount=1, topicsPerSubject=1)
            if outcome == "refused":
                assert result == {
                    "__typename": "BudgetExceededError",
                    "code": "BUDGET_EXCEEDED",
                    "message": result["message"],
                }
                assert await GenerationJob.filter(requester_id=user.id).count() == 0
            else:
                job = await _finished(result["job"]["id"])
                assert job.status is JobStatus.FAILED and job.error_code == "BUDGET_EXCEEDED"
            assert fake.hits["primary"] == 0
        finally:
            await writer.aclose()
