"""The Prometheus metrics are recorded where things happen: each test reads `/metrics`, does
something, reads it again and checks the values moved (model calls with tokens, cost and
latency; breaker states; cache and coalescing; job outcomes; SQL statements per request;
sync mutation results)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from ai.errors import AIError
from ai.writer import Usage
from models import GenerationJob, JobStatus
from tests.ai_support import Build, topic
from tests.fake_openai import FakeOpenAI, Step, endpoint
from tests.support import count_statements, gql, make_course, sign_up
from tests.test_sync_support import mutation, push_body, raw


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = (await client.get("/metrics")).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_model_calls_with_tokens_cost_and_latency(
    client: httpx.AsyncClient, fake: FakeOpenAI, build: Build, url: str
) -> None:
    priced = endpoint("priced", url, price_input_per_mtok=1000, price_output_per_mtok=2000)
    writer = build([priced])
    before = await scrape(client)
    usage = Usage()
    await topic(writer, usage, "Eigenvalues")
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("coursegen_model_calls_total", model="priced", outcome="ok") == 1
    assert moved("coursegen_model_tokens_total", model="priced", kind="in") == usage.tokens_in > 0
    assert moved("coursegen_model_tokens_total", model="priced", kind="out") == usage.tokens_out
    assert moved("coursegen_model_cost_usd_total", model="priced") == float(usage.cost_usd) > 0
    assert moved("coursegen_model_call_seconds_count", model="priced") == 1


async def test_failed_calls_and_breaker_state(
    client: httpx.AsyncClient, fake: FakeOpenAI, build: Build
) -> None:
    writer = build(breaker={"min_calls": 1, "error_rate": 0.5, "cooldown_seconds": 60})
    fake.always("a", Step(status=500))
    before = await scrape(client)
    with pytest.raises(AIError):
        await topic(writer, Usage(), "Broken")
    after = await scrape(client)
    failed = value(after, "coursegen_model_calls_total", model="a", outcome="AI_UPSTREAM") - value(
        before, "coursegen_model_calls_total", model="a", outcome="AI_UPSTREAM"
    )
    assert failed >= 1
    assert value(after, "coursegen_model_breaker_open", model="a") == 1


async def test_cache_and_coalescing_hits(
    client: httpx.AsyncClient, fake: FakeOpenAI, build: Build
) -> None:
    writer = build()
    fake.always("a", Step(delay=0.2))
    before = await scrape(client)
    # Two identical calls at once share one upstream call; a third later hits the cache.
    await asyncio.gather(topic(writer, Usage(), "Same"), topic(writer, Usage(), "Same"))
    await topic(writer, Usage(), "Same")
    after = await scrape(client)

    def moved(cache: str, result: str) -> float:
        name = "coursegen_cache_lookups_total"
        return value(after, name, cache=cache, result=result) - value(
            before, name, cache=cache, result=result
        )

    assert moved("coalescer", "miss") == 1 and moved("coalescer", "hit") == 1
    assert moved("response", "hit") == 1 and moved("response", "miss") == 2
    assert len(fake.requests["a"]) == 1


async def _wait_for(job_id: str, status: JobStatus) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (await GenerationJob.get(id=job_id)).status is status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job never became {status}")


async def test_job_outcomes(client: httpx.AsyncClient, app: Starlette) -> None:
    user = await sign_up(client)
    before = await scrape(client)
    body = await gql(
        client,
        """mutation { generateCourse(input: {topic: "Counted", subjectCount: 1,
        topicsPerSubject: 1}) { ... on GenerateCourseSuccess { job { id } } } }""",
        token=user.token,
    )
    await _wait_for(body["data"]["generateCourse"]["job"]["id"], JobStatus.SUCCEEDED)

    async def succeeded() -> float:
        after = await scrape(client)
        name = "coursegen_job_outcomes_total"
        return value(after, name, outcome="succeeded") - value(before, name, outcome="succeeded")

    # Counted once the job's transaction has committed, a moment after readers can see it.
    deadline = time.monotonic() + 10
    while await succeeded() < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await succeeded() == 1


async def test_sql_statements_per_graphql_request(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    await make_course(user.id)
    query = "{ me { id } courses(first: 5) { nodes { id subjects { id topics { id } } } } }"
    before = await scrape(client)
    with count_statements() as statements:
        response = await client.post(
            "/graphql", json={"query": query}, headers={"authorization": f"Bearer {user.token}"}
        )
    assert response.status_code == 200 and "errors" not in response.json()
    after = await scrape(client)
    name = "coursegen_sql_statements_per_request"
    assert value(after, f"{name}_count") - value(before, f"{name}_count") == 1
    assert value(after, f"{name}_sum") - value(before, f"{name}_sum") == len(statements) > 0
    # Requests that are not GraphQL are not observed.
    await client.get("/health/ready")
    assert value(await scrape(client), f"{name}_count") == value(after, f"{name}_count")


async def test_sync_mutation_results_by_status(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id)
    body = push_body(
        "metrics-group",
        mutation("c1", 1, "bookmarkTopic", {"topicId": str(tree.topic_ids[0])}),
        mutation("c1", 2, "noSuchMutation", {}),
    )
    before = await scrape(client)
    await raw(client, user.token, "/sync/push", body)
    await raw(client, user.token, "/sync/push", body)  # a retry: both are duplicates
    after = await scrape(client)

    def moved(status: str) -> float:
        name = "coursegen_sync_mutations_total"
        return value(after, name, status=status) - value(before, name, status=status)

    assert (moved("APPLIED"), moved("REJECTED"), moved("DUPLICATE")) == (1, 1, 2)
