"""The router against a real HTTP fake with the real `openai` client: 500s, fallbacks and the
attempt budget, 429 and Retry-After, cut streams, first-token, idle and total timeouts.
(Answers, usage, auth and context errors: test_ai_answers.py; shared state, i.e. breakers,
budgets, cache, coalescing and cancellation: test_ai_shared_state.py.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from ai.breaker import BreakerState
from ai.errors import AIUnavailable, DeadlineExceeded
from ai.pricing import cost_usd
from ai.writer import Usage
from tests.ai_support import Build, topic
from tests.fake_openai import FakeOpenAI, Step, endpoint

# 1 -----------------------------------------------------------------------------------------


async def test_500s_fall_back_and_only_the_success_is_billed(
    fake: FakeOpenAI, url: str, build: Build
) -> None:
    fake.always("primary", Step(status=500))
    writer = build(
        [
            endpoint("primary", url, quality={"outline": 0.95, "topic": 0.95}),
            endpoint("fallback", url, quality={"outline": 0.5, "topic": 0.5}),
        ]
    )
    usage = Usage()
    result = await topic(writer, usage)
    assert result.content == "Lesson written by fallback."
    assert fake.hits["primary"] >= 1 and fake.hits["fallback"] == 1
    assert usage.attempts == fake.hits["primary"] + fake.hits["fallback"]
    # The 500s had no usage: only the fallback's answer is on the bill, at its price.
    assert usage.calls == 1 and usage.models == {"fallback"}
    fallback = writer.router.models["fallback"]
    assert usage.cost_usd == cost_usd(fallback, usage.tokens_in, usage.tokens_out) > 0


async def test_a_lone_model_is_retried_after_500s(fake: FakeOpenAI, build: Build) -> None:
    fake.script("a", Step(status=500), Step(status=500), Step())
    usage = Usage()
    await topic(build(), usage)
    assert fake.hits["a"] == 3
    assert usage.attempts == 3 and usage.calls == 1


async def test_the_attempt_budget_covers_retries_and_fallbacks(
    fake: FakeOpenAI, url: str, build: Build
) -> None:
    fake.always("a", Step(status=503))
    fake.always("b", Step(status=502))
    writer = build([endpoint("a", url), endpoint("b", url)], retry={"max_attempts": 3})
    with pytest.raises(AIUnavailable) as caught:
        await topic(writer, Usage())
    assert caught.value.code == "AI_UNAVAILABLE"
    assert fake.hits["a"] + fake.hits["b"] == 3


# 2 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_retry_after_makes_a_lone_model_wait(
    fake: FakeOpenAI, build: Build, form: str
) -> None:
    # An HTTP date has whole seconds: 3 s ahead is at least 2 s after `started`, taken first
    # (taken after the date, a slow machine could spend the margin in between).
    started = time.monotonic()
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    fake.script("a", Step(status=429, retry_after="2" if form == "seconds" else later), Step())
    writer = build(breaker={"min_calls": 1})
    await topic(writer, Usage())
    assert time.monotonic() - started >= 2.0
    assert fake.hits["a"] == 2
    # A rate limit is a cooldown, not a health failure: even a 1-call breaker stays closed.
    assert await writer.router.breaker.state("a") is BreakerState.CLOSED


async def test_429_switches_at_once_when_another_model_is_healthy(
    fake: FakeOpenAI, url: str, build: Build
) -> None:
    fake.always("a", Step(status=429, retry_after="2"))
    writer = build(
        [
            endpoint("a", url, quality={"outline": 0.9, "topic": 0.9}),
            endpoint("b", url, quality={"outline": 0.5, "topic": 0.5}),
        ]
    )
    started = time.monotonic()
    result = await topic(writer, Usage())
    assert time.monotonic() - started < 1.8  # did not wait out a's Retry-After (2 s)
    assert result.content == "Lesson written by b."
    assert fake.hits["a"] == 1 and fake.hits["b"] == 1


async def test_a_rate_limit_beyond_the_deadline_fails_fast(fake: FakeOpenAI, build: Build) -> None:
    fake.always("a", Step(status=429, retry_after="30"))
    started = time.monotonic()
    with pytest.raises(AIUnavailable):
        await topic(build(), Usage())
    assert time.monotonic() - started < 10.0  # no point sleeping 30 s into a timeout


# 3 -----------------------------------------------------------------------------------------


async def test_a_cut_stream_is_a_failure_and_is_regenerated(fake: FakeOpenAI, build: Build) -> None:
    fake.script("a", Step(cut_after=2), Step())
    usage = Usage()
    writer = build()
    result = await topic(writer, usage)
    assert result.content == "Lesson written by a."
    assert fake.hits["a"] == 2 and usage.attempts == 2
    assert usage.calls == 1  # the cut stream reported no usage: not billed
    assert writer.router.health.get("a").error_rate > 0


async def test_a_cut_stream_is_never_taken_as_a_short_answer(
    fake: FakeOpenAI, build: Build
) -> None:
    fake.always("a", Step(cut_after=2))
    with pytest.raises(AIUnavailable):
        await topic(build(retry={"max_attempts": 2}), Usage())
    assert fake.hits["a"] == 2


# 4 -----------------------------------------------------------------------------------------


async def test_headers_then_silence_trips_the_first_token_timeout(
    fake: FakeOpenAI, build: Build
) -> None:
    fake.script("a", Step(silence=True), Step())
    writer = build(timeouts={"first_token": 0.3, "idle": 0.3})
    started = time.monotonic()
    result = await topic(writer, Usage())
    elapsed = time.monotonic() - started
    assert result.content == "Lesson written by a."
    assert 0.3 <= elapsed < 1.5
    assert fake.hits["a"] == 2
    assert fake.disconnects["a"] == 1  # the silent request was abandoned, its socket closed


async def test_a_stall_mid_stream_trips_the_idle_timeout(fake: FakeOpenAI, build: Build) -> None:
    fake.script("a", Step(stall_after=2, stall=5.0), Step())
    writer = build(timeouts={"first_token": 3.0, "idle": 0.3})
    started = time.monotonic()
    await topic(writer, Usage())
    assert time.monotonic() - started < 2.5  # idle (0.3 s), not first-token (3 s)
    assert fake.hits["a"] == 2


async def test_one_deadline_covers_the_whole_call(fake: FakeOpenAI, build: Build) -> None:
    fake.always("a", Step(delay=5.0))
    writer = build(timeouts={"first_token": 5.0, "total": 0.5})
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as caught:
        await topic(writer, Usage())
    assert caught.value.code == "AI_TIMEOUT"
    assert time.monotonic() - started < 4.0  # the total (0.5 s), not first-token (5 s)
