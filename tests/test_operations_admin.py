"""The operator's surface: spend and tokens per user and day, queue depth, dead letters and
their replay, model endpoint health; operators only, with a second (non-admin) user refused
on every field."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from ai.breaker import BreakerState
from ai.errors import AIError
from ai.offline_writer import OfflineCourseWriter
from ai.writer import ModelTally, Usage
from generation import queue_status
from generation.redis_queue import _stream, dead_stream
from generation.runner import InProcessJobRunner
from models import GenerationJob, JobStatus, ModelUsage, User, UserRole
from services import model_usage, operations
from services.model_usage import today
from settings import Settings
from subscriptions.progress_log import InProcessProgressLog
from tests import support
from tests.ai_support import Build, topic
from tests.conftest import start_redis_worker
from tests.fake_openai import FakeOpenAI, Step
from tests.support import ROOT, gql, sign_up
from web import metrics

GENERATE = """
mutation($input: GenerateCourseInput!) {
  generateCourse(input: $input) { ... on GenerateCourseSuccess { job { id } course { id } } }
}
"""
USAGE = """
query($from: Date!, $to: Date!, $user: ID, $first: Int! = 100) {
  admin { usage(from: $from, to: $to, userId: $user, first: $first) {
    from to truncated
    days { day userId email calls tokensIn tokensOut cost models { model calls tokensIn tokensOut cost } }
  } }
}
"""
QUEUE = "{ admin { queue { backend waiting byTier { tier waiting } queuedJobs runningJobs deadLettered } } }"
DEAD_LETTERS = "{ admin { deadLetters { requesterId job { id status attempts error { code } } } } }"
MODELS = (
    "{ admin { modelEndpoints { name model breaker available latencyMs errorRate "
    "cooldownSeconds disabledSeconds } } }"
)
REPLAY = """
mutation($id: ID!) { replayDeadLetter(jobId: $id) {
  __typename
  ... on ReplayDeadLetterSuccess { requeued job { id status attempts } }
  ... on UserError { code field }
} }
"""
ADMIN_FIELDS = [
    ("usage", USAGE, {"from": "2026-01-01", "to": "2026-01-31"}),
    ("queue", QUEUE, {}),
    ("deadLetters", DEAD_LETTERS, {}),
    ("modelEndpoints", MODELS, {}),
]


async def _admin(client: httpx.AsyncClient) -> support.TestUser:
    user = await sign_up(client)
    await operations.set_role(user.email, UserRole.ADMIN)
    return user


def _code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


@pytest.mark.parametrize(("name", "query", "variables"), ADMIN_FIELDS)
async def test_every_admin_field_is_forbidden_to_other_users(
    client: httpx.AsyncClient, name: str, query: str, variables: dict[str, Any]
) -> None:
    admin = await _admin(client)
    other = await sign_up(client)
    allowed = await gql(client, query, variables, token=admin.token)
    assert "errors" not in allowed and allowed["data"]["admin"][name] is not None
    refused = await gql(client, query, variables, token=other.token)
    assert _code(refused) == "FORBIDDEN" and refused["data"]["admin"] is None
    anonymous = await gql(client, query, variables)
    assert _code(anonymous) == "UNAUTHENTICATED"


async def test_grant_admin_command_makes_an_operator(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await sign_up(client)
    assert _code(await gql(client, QUEUE, token=user.token)) == "FORBIDDEN"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSEGEN_")}
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=settings.resolved_database_url,
        SECRET_KEY=str(settings.secret_key),
        COURSEGEN_ENV="test",
    )
    command = [sys.executable, "manage.py", "grant-admin", user.email.upper()]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "admin" in done.stdout
    # The role is read at every request: the same token works at once.
    assert "errors" not in await gql(client, QUEUE, token=user.token)
    unknown = subprocess.run(
        [sys.executable, "manage.py", "grant-admin", "nobody@example.com"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode != 0 and "nobody@example.com" in unknown.stderr


async def _until(check: Any, limit: float = 30) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def _finished(job_id: str) -> bool:
    job = await GenerationJob.get(id=job_id)
    return job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)


async def test_usage_per_user_and_day_is_booked_from_generation(
    client: httpx.AsyncClient,
) -> None:
    admin = await _admin(client)
    learner = await sign_up(client)
    body = await gql(
        client,
        GENERATE,
        {"input": {"topic": "Soil science", "subjectCount": 2, "topicsPerSubject": 2}},
        token=learner.token,
    )
    job_id = body["data"]["generateCourse"]["job"]["id"]
    await _until(lambda: _finished(job_id))
    job = await GenerationJob.get(id=job_id)
    day = today().isoformat()
    report = await gql(
        client, USAGE, {"from": day, "to": day, "user": str(learner.id)}, token=admin.token
    )
    days = report["data"]["admin"]["usage"]["days"]
    assert len(days) == 1
    row = days[0]
    # The offline writer: one outline call and one call per topic, nothing spent.
    assert row["userId"] == str(learner.id) and row["email"] == learner.email
    assert row["calls"] == 1 + 2 * 2 and row["cost"] == 0
    assert (row["tokensIn"], row["tokensOut"]) == (job.tokens_in, job.tokens_out)
    assert [m["model"] for m in row["models"]] == job.models_used
    # The admin's own (empty) day and another user's are not in a report about this user.
    assert all(d["userId"] == str(learner.id) for d in days)


async def test_usage_report_sums_per_day_and_model_over_a_range(
    client: httpx.AsyncClient,
) -> None:
    admin = await _admin(client)
    alice, bob = await sign_up(client), await sign_up(client)
    monday = date(2026, 3, 2)
    tally = ModelTally(calls=2, tokens_in=100, tokens_out=400, cost_usd=Decimal("0.0123456"))
    await model_usage.book(
        alice.id, {"big": tally, "small": ModelTally(1, 10, 20, Decimal(0))}, monday
    )
    # Two runs on one day add up; concurrent bookings do not lose each other's figures.
    await asyncio.gather(
        *(model_usage.book(alice.id, {"big": tally}, monday + timedelta(days=1)) for _ in range(5))
    )
    await model_usage.book(bob.id, {"big": tally}, monday)
    await model_usage.book(bob.id, {"big": tally}, monday + timedelta(days=30))  # out of range
    body = await gql(
        client,
        USAGE,
        {"from": monday.isoformat(), "to": (monday + timedelta(days=6)).isoformat()},
        token=admin.token,
    )
    report = body["data"]["admin"]["usage"]
    rows = {(d["day"], d["email"]): d for d in report["days"]}
    assert set(rows) == {
        ("2026-03-02", alice.email),
        ("2026-03-02", bob.email),
        ("2026-03-03", alice.email),
    }
    assert report["days"][0]["day"] == "2026-03-03"  # newest day first
    tuesday = rows[("2026-03-03", alice.email)]
    assert tuesday["calls"] == 10 and tuesday["tokensIn"] == 500 and tuesday["tokensOut"] == 2000
    assert tuesday["cost"] == pytest.approx(5 * 0.012346)  # micro-dollars, rounded up per run
    monday_alice = rows[("2026-03-02", alice.email)]
    assert [m["model"] for m in monday_alice["models"]] == ["big", "small"]
    assert monday_alice["calls"] == 3 and monday_alice["tokensOut"] == 420
    limited = await gql(
        client,
        USAGE,
        {"from": "2026-03-01", "to": "2026-03-31", "first": 1},
        token=admin.token,
    )
    assert limited["data"]["admin"]["usage"]["truncated"] is True
    assert len(limited["data"]["admin"]["usage"]["days"]) == 1
    assert await ModelUsage.filter(user_id=alice.id).count() == 3


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
        ({"from": "2025-01-01", "to": "2026-03-01"}, "to"),
        ({"from": "2026-03-01", "to": "2026-03-02", "first": 0}, "first"),
        ({"from": "2026-03-01", "to": "2026-03-02", "user": "not-a-uuid"}, "userId"),
    ],
)
async def test_usage_report_refuses_bad_ranges(
    client: httpx.AsyncClient, variables: dict[str, Any], field: str
) -> None:
    admin = await _admin(client)
    body = await gql(client, USAGE, variables, token=admin.token)
    assert _code(body) == "INVALID_INPUT"
    assert body["errors"][0]["extensions"]["field"] == field


async def test_queue_depth_counts_what_waits(
    client: httpx.AsyncClient, app: Starlette, settings: Settings
) -> None:
    admin = await _admin(client)
    before = (await gql(client, QUEUE, token=admin.token))["data"]["admin"]["queue"]
    assert before["backend"] == ("redis" if settings.redis_url else "in-process")
    assert {t["tier"] for t in before["byTier"]} == {"premium", "standard", "free"}
    if not settings.redis_url:
        # The embedded runner's own queue, before its workers start taking from it.
        runner = InProcessJobRunner(settings, OfflineCourseWriter(), InProcessProgressLog())
        for tier in ("premium", "premium", "free"):
            await runner.enqueue(uuid.uuid4(), tier)
        assert await queue_status.waiting_by_tier(runner) == {
            "premium": 2,
            "standard": 0,
            "free": 1,
        }
        assert "coursegen_job_queue_depth" in (await client.get("/metrics")).text
        return
    learner = await sign_up(client)
    await User.filter(id=learner.id).update(tier="premium")
    # Queued while no worker takes jobs: the stream holds it until one comes back.
    app.state.job_worker.stop()
    await asyncio.wait_for(app.state.job_worker_task, timeout=10)
    try:
        body = await gql(
            client,
            GENERATE,
            {"input": {"topic": "Queue depth", "subjectCount": 1, "topicsPerSubject": 1}},
            token=learner.token,
        )
        job_id = body["data"]["generateCourse"]["job"]["id"]
        during = (await gql(client, QUEUE, token=admin.token))["data"]["admin"]["queue"]
        premium = next(t for t in during["byTier"] if t["tier"] == "premium")
        assert premium["waiting"] == 1 and during["queuedJobs"] >= 1
        # The background refresher's step (every METRICS_REFRESH_SECONDS); a scrape only reads.
        await metrics.refresh_shared_gauges(app.state.runtime)
        metrics_text = (await client.get("/metrics")).text
        assert 'coursegen_job_queue_depth{queue="premium"} 1.0' in metrics_text
    finally:
        start_redis_worker(app, settings)
    await _until(lambda: _finished(job_id))
    after = (await gql(client, QUEUE, token=admin.token))["data"]["admin"]["queue"]
    assert next(t for t in after["byTier"] if t["tier"] == "premium")["waiting"] == 0


async def _dead_letter(client: httpx.AsyncClient, app: Starlette, user: support.TestUser) -> str:
    """A job that exhausted its attempts, as repeated crashes leave it (a real run fails it)."""
    body = await gql(
        client,
        GENERATE,
        {"input": {"topic": "Poison pill", "subjectCount": 1, "topicsPerSubject": 1}},
        token=user.token,
    )
    job_id = body["data"]["generateCourse"]["job"]["id"]
    await _until(lambda: _finished(job_id))
    settings: Settings = app.state.settings
    await GenerationJob.filter(id=job_id).update(
        status=JobStatus.RUNNING, attempts=settings.generation_max_attempts
    )
    runtime = app.state.runtime
    if runtime.redis is not None:
        await runtime.redis.xadd(_stream("free"), {"job": job_id, "takeover": "1"})
    else:
        await runtime.jobs.enqueue(uuid.UUID(job_id), "free", takeover=True)

    async def failed() -> bool:
        job = await GenerationJob.get(id=job_id)
        return job.status is JobStatus.FAILED

    await _until(failed)
    return job_id


async def test_dead_letters_are_listed_and_replayed_once(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    admin = await _admin(client)
    owner = await sign_up(client)
    job_id = await _dead_letter(client, app, owner)
    listed = (await gql(client, DEAD_LETTERS, token=admin.token))["data"]["admin"]["deadLetters"]
    mine = [d for d in listed if d["job"]["id"] == job_id]
    assert mine and mine[0]["requesterId"] == str(owner.id)
    assert mine[0]["job"]["error"]["code"] == "ATTEMPTS_EXHAUSTED"
    queue = (await gql(client, QUEUE, token=admin.token))["data"]["admin"]["queue"]
    assert queue["deadLettered"] >= 1

    # Not an operator, not even the job's owner: refused, and nothing changes.
    for user in (owner, await sign_up(client)):
        refused = await gql(client, REPLAY, {"id": job_id}, token=user.token)
        assert refused["data"]["replayDeadLetter"]["code"] == "FORBIDDEN"
    assert (await GenerationJob.get(id=job_id)).status is JobStatus.FAILED

    replies = await asyncio.gather(
        *(gql(client, REPLAY, {"id": job_id}, token=admin.token) for _ in range(4))
    )
    results = [r["data"]["replayDeadLetter"] for r in replies]
    assert all(r["__typename"] == "ReplayDeadLetterSuccess" for r in results)
    assert sum(r["requeued"] for r in results) == 1

    async def succeeded() -> bool:
        job = await GenerationJob.get(id=job_id)
        return job.status is JobStatus.SUCCEEDED

    await _until(succeeded)
    job = await GenerationJob.get(id=job_id)
    assert job.attempts == 1 and job.error_code is None
    again = await gql(client, REPLAY, {"id": job_id}, token=admin.token)
    assert again["data"]["replayDeadLetter"]["requeued"] is False
    listed = (await gql(client, DEAD_LETTERS, token=admin.token))["data"]["admin"]["deadLetters"]
    assert all(d["job"]["id"] != job_id for d in listed)
    redis = app.state.runtime.redis
    if redis is not None:  # the audit stream forgets a replayed job
        entries = await redis.xrange(dead_stream())
        assert all(fields[b"job"].decode() != job_id for _, fields in entries)


async def test_replaying_an_unknown_or_malformed_id(client: httpx.AsyncClient) -> None:
    admin = await _admin(client)
    unknown = await gql(client, REPLAY, {"id": str(uuid.uuid4())}, token=admin.token)
    assert unknown["data"]["replayDeadLetter"]["code"] == "NOT_FOUND"
    malformed = await gql(client, REPLAY, {"id": "nope"}, token=admin.token)
    assert malformed["data"]["replayDeadLetter"] == {
        "__typename": "InvalidInputError",
        "code": "INVALID_INPUT",
        "field": "jobId",
    }


async def test_model_endpoints_of_the_offline_writer(client: httpx.AsyncClient) -> None:
    admin = await _admin(client)
    endpoints = (await gql(client, MODELS, token=admin.token))["data"]["admin"]["modelEndpoints"]
    assert endpoints == [
        {
            "name": "offline-course-writer",
            "model": "offline-course-writer",
            "breaker": "CLOSED",
            "available": True,
            "latencyMs": 0.0,
            "errorRate": 0.0,
            "cooldownSeconds": 0.0,
            "disabledSeconds": 0.0,
        }
    ]


async def test_model_health_shows_an_open_breaker(fake: FakeOpenAI, build: Build) -> None:
    writer = build(breaker={"min_calls": 1, "error_rate": 0.5, "cooldown_seconds": 60})
    fake.always("a", Step(status=500))
    with pytest.raises(AIError):
        await topic(writer, Usage())
    [health] = await operations.model_health(writer)
    assert health.name == "a" and health.breaker is BreakerState.OPEN
    assert health.available is False and health.error_rate > 0
