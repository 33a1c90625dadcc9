"""Shared state of the router, each in-process and in Redis: circuit breakers, budgets, the
response cache; and coalescing and cancellation, watched from the fake server's side (hits,
requests in flight, client disconnects). The Redis variants skip only when
COURSEGEN_TEST_REDIS_URL is unset."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ai.breaker import Admission, BreakerState, MemoryBreaker, Outcome, RedisBreaker
from ai.budget import BudgetLimits, MemoryBudget, RedisBudget
from ai.config import BreakerPolicy
from ai.errors import AIUnavailable, BudgetExceeded
from ai.pricing import estimate_prompt_tokens, worst_case_cost
from ai.routed_writer import RoutedCourseWriter, topic_messages
from ai.router import Router
from ai.writer import CourseRequest, TopicContent, Usage
from tests.ai_support import who
from tests.fake_openai import FakeOpenAI, Step, endpoint, redis_or_skip, router_config

REQUEST = CourseRequest(topic="Statistics")
Backend = tuple[Any | None, str]  # (redis client or None, key prefix)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield None, "unused"
        return
    async with redis_or_skip() as pair:
        yield pair


@pytest.fixture
async def writer_for(
    url: str, backend: Backend
) -> AsyncIterator[Callable[..., RoutedCourseWriter]]:
    made: list[RoutedCourseWriter] = []
    redis, prefix = backend

    def build(models: list[dict[str, Any]] | None = None, **policy: Any) -> RoutedCourseWriter:
        config = router_config(models or [endpoint("a", url)], redis_prefix=prefix, **policy)
        writer = RoutedCourseWriter(Router.from_config(config, redis=redis))
        made.append(writer)
        return writer

    yield build
    for writer in made:
        await writer.aclose()


async def outcomes(calls: list[Awaitable[TopicContent]]) -> list[Any]:
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def eventually(check: Callable[[], bool], within: float = 1.0) -> float:
    """Seconds until `check()` held; fails after `within`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "condition not reached in time"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


# 5: breaker, through the router ------------------------------------------------------------


async def test_breaker_opens_then_lets_exactly_one_probe_through(
    fake: FakeOpenAI, writer_for: Callable[..., RoutedCourseWriter]
) -> None:
    writer = writer_for(
        retry={"max_attempts": 1},
        breaker={"min_calls": 3, "error_rate": 0.5, "cooldown_seconds": 0.5},
    )
    fake.always("a", Step(status=500))
    for name in ("t1", "t2", "t3"):
        with pytest.raises(AIUnavailable):
            await writer.write_topic(REQUEST, "S", name, who(), Usage())
    assert fake.hits["a"] == 3
    with pytest.raises(AIUnavailable, match="circuit"):  # open: the server sees nothing
        await writer.write_topic(REQUEST, "S", "t4", who(), Usage())
    assert fake.hits["a"] == 3

    await asyncio.sleep(0.6)  # the cooldown passes
    fake.always("a", Step(delay=0.3))  # healthy again, and slow enough to overlap
    results = await outcomes(
        [writer.write_topic(REQUEST, "S", f"p{i}", who(), Usage()) for i in range(10)]
    )
    assert fake.hits["a"] == 4  # exactly one probe
    assert sum(isinstance(r, TopicContent) for r in results) == 1
    assert sum(isinstance(r, AIUnavailable) for r in results) == 9
    assert await writer.router.breaker.state("a") is BreakerState.CLOSED
    await writer.write_topic(REQUEST, "S", "after", who(), Usage())
    assert fake.hits["a"] == 5


# 6: budget -----------------------------------------------------------------------------------


async def test_a_budget_for_ten_calls_lets_at_most_ten_of_twenty_through(
    fake: FakeOpenAI, url: str, writer_for: Callable[..., RoutedCourseWriter]
) -> None:
    model = endpoint("a", url, price_input_per_mtok=1000, price_output_per_mtok=1000)
    probe = writer_for([model])
    # Every topic name has the same length, so every call reserves the same worst case.
    messages = topic_messages(REQUEST, "S", "topic-00")
    worst = worst_case_cost(
        probe.router.models["a"],
        estimate_prompt_tokens(messages),
        probe.router.policy.max_tokens["topic"],
    )
    limit = worst * 10 + worst / 2
    writer = writer_for([model], budgets={"standard": {"daily_usd": str(limit)}})
    fake.always("a", Step(delay=0.3))  # all twenty overlap: every reservation is concurrent
    user = who()
    results = await outcomes(
        [writer.write_topic(REQUEST, "S", f"topic-{i:02}", user, Usage()) for i in range(20)]
    )
    assert 1 <= fake.hits["a"] <= 10
    assert fake.max_in_flight <= 10
    assert sum(isinstance(r, TopicContent) for r in results) == fake.hits["a"]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(refused) == 20 - fake.hits["a"] and refused[0].code == "BUDGET_EXCEEDED"
    budget = writer.router.budget
    assert await budget.reserved(str(user.user_id)) == 0
    day, month = await budget.spent(str(user.user_id))
    assert 0 < day <= limit and day == month


async def test_budget_prefers_a_model_that_still_fits(
    fake: FakeOpenAI, url: str, writer_for: Callable[..., RoutedCourseWriter]
) -> None:
    writer = writer_for(
        [
            endpoint("dear", url, price_output_per_mtok=1000, quality={"topic": 1.0}),
            endpoint("cheap", url, quality={"topic": 0.3}),
        ],
        budgets={"premium": {"daily_usd": "0.5", "monthly_usd": "5"}},
    )
    result = await writer.write_topic(REQUEST, "S", "T", who("premium"), Usage())
    assert result.content == "Lesson written by cheap."
    assert fake.hits["dear"] == 0


# 7: coalescing and the cache -----------------------------------------------------------------


async def test_fifty_identical_calls_make_one_upstream_call(
    fake: FakeOpenAI, writer_for: Callable[..., RoutedCourseWriter]
) -> None:
    writer = writer_for()
    fake.always("a", Step(delay=0.3))
    usages = [Usage() for _ in range(50)]
    results = await outcomes([writer.write_topic(REQUEST, "S", "Same", who(), u) for u in usages])
    assert fake.hits["a"] == 1
    assert all(r == results[0] for r in results) and isinstance(results[0], TopicContent)
    assert sum(u.calls for u in usages) == 1  # the caller that started it pays, once
    # Later, the same prompt is answered from the cache.
    again = await writer.write_topic(REQUEST, "S", "Same", who(), Usage())
    assert again == results[0] and fake.hits["a"] == 1


async def test_when_every_identical_caller_cancels_the_upstream_call_closes(
    fake: FakeOpenAI, writer_for: Callable[..., RoutedCourseWriter]
) -> None:
    # Timeouts far away: only the cancellation can close the connection.
    writer = writer_for(timeouts={"first_token": 30, "total": 30})
    fake.always("a", Step(delay=20.0))
    tasks = [
        asyncio.create_task(writer.write_topic(REQUEST, "S", "Shared", who(), Usage()))
        for _ in range(50)
    ]
    await eventually(lambda: fake.in_flight == 1)
    for task in tasks[:49]:
        task.cancel()
    await asyncio.sleep(0.1)
    assert fake.disconnects["a"] == 0  # one caller still waits: the call goes on
    tasks[49].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Well before the upstream's 20 s answer or the 30 s timeouts: closed by the cancellation
    # (a loose bound, so a loaded machine does not fail it).
    await eventually(lambda: fake.disconnects["a"] == 1, within=10.0)
    assert fake.hits["a"] == 1 and writer.router.coalescer.in_flight() == 0


# 10: cancellation ---------------------------------------------------------------------------


async def test_cancelling_a_job_closes_its_requests_and_releases_its_budget(
    fake: FakeOpenAI, writer_for: Callable[..., RoutedCourseWriter]
) -> None:
    writer = writer_for(
        budgets={"standard": {"daily_usd": "100"}}, timeouts={"first_token": 30, "total": 30}
    )
    fake.always("a", Step(delay=20.0))
    user, usage = who(), Usage()
    job = asyncio.gather(
        *(writer.write_topic(REQUEST, "S", f"T{i}", user, usage) for i in range(5))
    )
    await eventually(lambda: fake.in_flight == 5)
    budget = writer.router.budget
    assert await budget.reserved(str(user.user_id)) > 0
    job.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await job
    # Closed by the cancellation, not by the 20 s answer or the 30 s timeouts (a loose bound,
    # so a loaded machine does not fail it).
    await eventually(lambda: fake.disconnects["a"] == 5, within=10.0)
    assert time.monotonic() - started < 10.0
    assert await budget.reserved(str(user.user_id)) == 0
    assert await budget.spent(str(user.user_id)) == (0, 0)
    assert usage.calls == 0 and usage.attempts == 5


# Breakers and budgets, directly, on both backends --------------------------------------------


@pytest.fixture
def breaker_for(backend: Backend) -> Callable[[BreakerPolicy], MemoryBreaker | RedisBreaker]:
    redis, prefix = backend

    def build(policy: BreakerPolicy) -> MemoryBreaker | RedisBreaker:
        if redis is None:
            return MemoryBreaker(policy, probe_ttl=5)
        return RedisBreaker(redis, policy, probe_ttl=5, prefix=prefix)

    return build


async def test_breaker_transitions(
    breaker_for: Callable[[BreakerPolicy], MemoryBreaker | RedisBreaker],
) -> None:
    breaker = breaker_for(BreakerPolicy(min_calls=2, error_rate=0.5, cooldown_seconds=0.3))
    assert await breaker.admit("m") is Admission.ALLOW
    await breaker.record("m", Outcome.SUCCESS, probe=False)
    await breaker.record("m", Outcome.RELEASE, probe=False)  # neutral: not a call outcome
    assert await breaker.state("m") is BreakerState.CLOSED
    await breaker.record("m", Outcome.FAILURE, probe=False)  # 1 of 2 failed: 50%
    assert await breaker.state("m") is BreakerState.OPEN
    assert await breaker.admit("m") is Admission.DENY
    await asyncio.sleep(0.35)
    assert await breaker.state("m") is BreakerState.HALF_OPEN
    admissions = await asyncio.gather(*(breaker.admit("m") for _ in range(10)))
    assert admissions.count(Admission.PROBE) == 1
    assert await breaker.state("m") is BreakerState.PROBING
    await breaker.record("m", Outcome.FAILURE, probe=True)  # the probe failed: open again
    assert await breaker.state("m") is BreakerState.OPEN
    await asyncio.sleep(0.35)
    assert await breaker.admit("m") is Admission.PROBE
    await breaker.record("m", Outcome.RELEASE, probe=True)  # e.g. the prober was cancelled
    assert await breaker.admit("m") is Admission.PROBE  # the slot is free again
    await breaker.record("m", Outcome.SUCCESS, probe=True)
    assert await breaker.state("m") is BreakerState.CLOSED


async def test_a_late_failure_extends_an_open_breaker_but_never_shortens_it(
    breaker_for: Callable[[BreakerPolicy], MemoryBreaker | RedisBreaker],
) -> None:
    breaker = breaker_for(BreakerPolicy(min_calls=1, error_rate=0.5, cooldown_seconds=0.4))
    await breaker.record("m", Outcome.FAILURE, probe=False)
    await asyncio.sleep(0.25)
    await breaker.record("m", Outcome.FAILURE, probe=False)  # a slow call failing late
    await asyncio.sleep(0.25)  # 0.5 s after opening: past the first deadline, not the second
    assert await breaker.state("m") is BreakerState.OPEN
    await asyncio.sleep(0.2)
    assert await breaker.state("m") is BreakerState.HALF_OPEN
    # A failure whose own horizon is shorter (cooldown since lowered) cannot pull it in.
    await breaker.record("n", Outcome.FAILURE, probe=False)
    breaker.policy = BreakerPolicy(min_calls=1, error_rate=0.5, cooldown_seconds=0.01)
    await breaker.record("n", Outcome.FAILURE, probe=False)
    await asyncio.sleep(0.05)
    assert await breaker.state("n") is BreakerState.OPEN


@pytest.fixture
def budget_store(backend: Backend) -> MemoryBudget | RedisBudget:
    redis, prefix = backend
    return MemoryBudget() if redis is None else RedisBudget(redis, prefix=prefix)


async def test_budget_reserve_is_atomic_and_settles_to_actual(
    budget_store: MemoryBudget | RedisBudget,
) -> None:
    limits = BudgetLimits(daily=10_000_000, monthly=50_000_000)  # $10 a day
    reservations = await asyncio.gather(
        *(budget_store.reserve("u", limits, Decimal(1)) for _ in range(25))
    )
    held = [r for r in reservations if r is not None]
    assert len(held) == 10
    assert await budget_store.remaining("u", limits) == 0
    assert await budget_store.reserved("u") == 10
    for reservation in held:
        await budget_store.settle(reservation, Decimal("0.25"))
    assert await budget_store.reserved("u") == 0
    assert await budget_store.spent("u") == (Decimal("2.5"), Decimal("2.5"))
    assert await budget_store.remaining("u", limits) == Decimal("7.5")
    assert await budget_store.remaining("u", BudgetLimits(None, None)) is None


async def test_the_monthly_limit_binds_too(budget_store: MemoryBudget | RedisBudget) -> None:
    limits = BudgetLimits(daily=None, monthly=1_000_000)
    assert await budget_store.reserve("m", limits, Decimal("0.6")) is not None
    assert await budget_store.reserve("m", limits, Decimal("0.6")) is None


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 5, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _budget_with_clock(backend: Backend, clock: _Clock) -> MemoryBudget | RedisBudget:
    redis, prefix = backend
    if redis is None:
        return MemoryBudget(clock, reservation_seconds=60)
    return RedisBudget(redis, prefix=prefix, clock=clock, reservation_seconds=60)


async def test_a_hold_never_settled_expires_and_is_swept(backend: Backend) -> None:
    """A worker dies between reserve and settle: once the hold expires the money is the
    user's again, and the counters hold only what was spent."""
    clock = _Clock()
    budget = _budget_with_clock(backend, clock)
    limits = BudgetLimits(daily=1_000_000, monthly=None)  # $1 a day
    orphan = await budget.reserve("d", limits, Decimal("0.8"))  # its worker dies: never settled
    assert orphan is not None
    kept = await budget.reserve("d", limits, Decimal("0.1"))
    assert kept is not None
    assert await budget.reserve("d", limits, Decimal("0.5")) is None  # the hold is still live

    clock.now += timedelta(seconds=30)
    await budget.settle(kept, Decimal("0.05"))  # settled in time: unaffected by the sweep
    clock.now += timedelta(seconds=31)  # past the orphan's expiry
    assert await budget.remaining("d", limits) == Decimal("0.95")
    assert await budget.reserved("d") == 0
    assert await budget.reserve("d", limits, Decimal("0.9")) is not None
    assert await budget.spent("d") == (Decimal("0.95"), Decimal("0.95"))

    # A settle that arrives after its hold was swept records the actual cost only, once.
    await budget.settle(orphan, Decimal("0.02"))
    assert (await budget.spent("d"))[0] == Decimal("0.97")
    assert await budget.reserved("d") == Decimal("0.9")


async def test_an_expired_hold_of_yesterday_is_released_from_yesterday(backend: Backend) -> None:
    clock = _Clock()
    clock.now = datetime(2026, 12, 5, 23, 59, 50, tzinfo=UTC)
    budget = _budget_with_clock(backend, clock)
    limits = BudgetLimits(daily=1_000_000, monthly=2_000_000)
    assert await budget.reserve("y", limits, Decimal("0.7")) is not None
    clock.now += timedelta(minutes=5)  # the next day, past the hold's expiry
    assert await budget.remaining("y", limits) == Decimal(1)
    assert await budget.spent("y") == (Decimal(0), Decimal(0))
    assert await budget.reserved("y") == 0
