"""Unit tests of how the router chooses and waits: scoring by tier and complexity, the
selector's filters and its log line, rpm/tpm windows, Retry-After; and the response cache and
the coalescer on their own."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from ai.config import RouterConfig
from ai.errors import parse_retry_after
from ai.health import HealthBook
from ai.response_cache import Coalescer, MemoryCache, cache_key
from ai.routed_writer import topic_messages
from ai.router import Router
from ai.scoring import rank
from ai.selection import CallState
from ai.writer import CourseRequest, Requester
from tests.fake_openai import endpoint, router_config

URL = "http://127.0.0.1:9/v1"  # never contacted in this module


# Choice and scoring --------------------------------------------------------------------------


def _pair() -> RouterConfig:
    return router_config(
        [
            endpoint(
                "strong",
                URL,
                price_input_per_mtok=10,
                price_output_per_mtok=30,
                quality={"outline": 0.95, "topic": 0.9},
            ),
            endpoint(
                "cheap",
                URL,
                price_input_per_mtok=0.5,
                price_output_per_mtok=1.5,
                quality={"outline": 0.6, "topic": 0.6},
            ),
        ]
    )


def _pick(
    config: RouterConfig, task: str, tier: str, error_rates: dict[str, float] | None = None
) -> str:
    models = config.models
    costs = {m.name: m.price_input_per_mtok + m.price_output_per_mtok for m in models}
    ranked = rank(
        models,
        task=task,  # type: ignore[arg-type]
        complexity=config.policy.complexity[task],  # type: ignore[index]
        quality_bias=config.policy.quality_bias(tier),
        costs=costs,
        latencies={m.name: 1.0 for m in models},
        error_rates=error_rates or {m.name: 0.0 for m in models},
    )
    return ranked[0].model.name


def test_tier_and_complexity_change_the_pick() -> None:
    config = _pair()
    assert _pick(config, "outline", "premium") == "strong"
    assert _pick(config, "outline", "free") == "cheap"  # the tier changed the pick
    assert _pick(config, "topic", "premium") == "cheap"  # the complexity changed the pick
    assert _pick(config, "topic", "free") == "cheap"


def test_a_failing_model_loses_its_lead() -> None:
    config = _pair()
    assert _pick(config, "outline", "premium", {"strong": 0.9, "cheap": 0.0}) == "cheap"


async def test_the_selector_filters_and_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    config = router_config(
        [
            endpoint("premium-only", URL, tiers=["premium"], quality={"topic": 1.0}),
            endpoint("no-json", URL, capabilities={"json_mode": False}, quality={"topic": 1.0}),
            endpoint("tiny", URL, context_window=500, quality={"topic": 1.0}),
            endpoint("ok", URL, quality={"topic": 0.1}),
        ]
    )
    router = Router.from_config(config)
    try:
        messages = topic_messages(CourseRequest(topic="x"), "s", "t")
        call = CallState(messages=messages, deadline=asyncio.get_running_loop().time() + 5)
        with caplog.at_level(logging.INFO, logger="coursegen.ai"):
            chosen = await router.selector.choose(
                "topic", frozenset({"json_mode"}), Requester(uuid.uuid4(), "free"), call
            )
        assert chosen.name == "ok"
        record = next(r for r in caplog.records if r.getMessage() == "ai model chosen")
        assert record.ai_model == "ok"  # type: ignore[attr-defined]
        assert record.ai_rejected == {  # type: ignore[attr-defined]
            "premium-only": "tier",
            "no-json": "capability",
            "tiny": "context",
        }
        assert "score" in record.ai_scores["ok"]  # type: ignore[attr-defined]
    finally:
        await router.aclose()


def test_rpm_and_tpm_windows_hold_a_model_back() -> None:
    now = [100.0]
    config = router_config([endpoint("a", URL, rpm=2, tpm=1000)])
    book = HealthBook(config.models, clock=lambda: now[0])
    assert book.wait_for("a", 400) == 0
    book.note_request("a", 400)
    now[0] += 10
    book.note_request("a", 400)
    assert book.wait_for("a", 100) == pytest.approx(50)  # rpm: the first leaves at t=160
    now[0] += 51
    assert book.wait_for("a", 100) == 0  # one request, 400 tokens left in the window
    assert book.wait_for("a", 700) == pytest.approx(9)  # tpm: must wait for the second one
    book.cool_down("a", 30)  # a 429 said so
    assert book.wait_for("a", 1) == pytest.approx(30)


# Retry-After ---------------------------------------------------------------------------------


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, now=now.timestamp()) == 0


# Cache and coalescer -------------------------------------------------------------------------


async def test_memory_cache_expires_and_evicts() -> None:
    now = [0.0]
    cache = MemoryCache(max_entries=2, clock=lambda: now[0])
    await cache.set("a", "1", ttl=10)
    await cache.set("b", "2", ttl=10)
    assert await cache.get("a") == "1"  # "a" is now the most recently used
    await cache.set("c", "3", ttl=10)
    assert await cache.get("b") is None and await cache.get("a") == "1"
    now[0] = 11
    assert await cache.get("a") is None
    await cache.set("d", "4", ttl=0)  # a TTL of 0 means "do not cache"
    assert await cache.get("d") is None


def test_cache_keys_cover_every_parameter() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10}
    assert cache_key(**base) == cache_key(**dict(reversed(list(base.items()))))
    assert cache_key(**base) != cache_key(**{**base, "max_tokens": 11})
    assert cache_key(**base) != cache_key(**{**base, "model": "n"})


async def test_coalescer_shares_results_and_errors() -> None:
    coalescer = Coalescer()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 42

    results = await asyncio.gather(*(coalescer.run("k", work) for _ in range(5)))
    assert calls == 1 and [r for r, _ in results] == [42] * 5
    assert [started for _, started in results].count(True) == 1

    async def boom() -> int:
        await asyncio.sleep(0.01)
        raise ValueError("shared failure")

    outcomes = await asyncio.gather(
        *(coalescer.run("e", boom) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, ValueError) for o in outcomes)
    assert coalescer.in_flight() == 0


async def test_coalescer_cancels_the_shared_work_only_when_everyone_left() -> None:
    coalescer = Coalescer()
    cancelled = asyncio.Event()

    async def work() -> int:
        try:
            await asyncio.sleep(10)
            return 1
        except asyncio.CancelledError:
            cancelled.set()
            raise

    first = asyncio.create_task(coalescer.run("k", work))
    second = asyncio.create_task(coalescer.run("k", work))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    assert not cancelled.is_set()  # the second caller still wants it
    second.cancel()
    async with asyncio.timeout(1):
        await asyncio.gather(first, second, return_exceptions=True)
    assert cancelled.is_set()  # and awaited: its cleanup ran before the cancellation completed
    assert coalescer.in_flight() == 0
