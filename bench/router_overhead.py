"""The AI router's own overhead per call, against a direct `openai` client call.

    PYTHONPATH=. .venv/bin/python -m bench.router_overhead --calls 200 --delays 0,200 \
        [--redis redis://127.0.0.1:6379/15]

The fake OpenAI server (tests/fake_openai.py) runs in a child process, so its CPU time does not
land in the measuring loop; it answers every request after a fixed delay, as a stream with
usage. For each delay, N sequential calls are timed each way, after a warm-up:
- direct: `AsyncOpenAI.chat.completions.create(stream=True, include_usage)` on the same
  prompt a topic call sends, the stream read to the end and the JSON parsed;
- router: `RoutedCourseWriter.write_topic`, i.e. choice, budget reserve/settle, breaker,
  cache lookup and store, coalescing, streaming with timeouts, repair and validation, usage
  booking. Every call has a new topic, so nothing is served from the cache.
With `--redis`, a third path: the router with breakers, budgets and cache in Redis.
The paths are called in turn (direct, router, ...), N rounds, so background load on a shared
machine hits them alike. Prints mean, p50 and p99 of each path, router minus direct for each
statistic, and the median of the per-round differences (the steadiest figure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

import openai

from ai.config import RouterConfig
from ai.routed_writer import RoutedCourseWriter, topic_messages
from ai.router import Router
from ai.writer import CourseRequest, Requester, Usage

REQUEST = CourseRequest(topic="Linear algebra", audience="data scientists")
MODEL = "bench"


def _serve(port: int, delay_ms: float) -> None:
    import uvicorn

    from tests.fake_openai import FakeOpenAI, Step

    fake = FakeOpenAI()
    fake.always(MODEL, Step(delay=delay_ms / 1000))
    # bench.generation_pipeline wants outlines of the size it asks for.
    fake.full_outlines = os.environ.get("FAKE_FULL_OUTLINES") == "1"
    uvicorn.run(fake, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def fake_server(delay_ms: float) -> Any:
    port = _free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.router_overhead", "--serve", str(port), str(delay_ms)]
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        child.terminate()
        child.wait(10)


def config(url: str, prefix: str) -> RouterConfig:
    return RouterConfig.model_validate(
        {
            "models": [
                {
                    "name": MODEL,
                    "model": MODEL,
                    "base_url": url,
                    "api_key": "bench",
                    "price_input_per_mtok": 1,
                    "price_output_per_mtok": 2,
                    "context_window": 100_000,
                    "capabilities": {"json_mode": True, "streaming": True},
                }
            ],
            "policy": {
                "budgets": {"standard": {"daily_usd": 1000, "monthly_usd": 10000}},
                "redis_prefix": prefix,
            },
        }
    )


Caller = Callable[[int], Awaitable[Any]]


async def interleaved(
    n: int, callers: dict[str, Caller], warmup: int = 20
) -> dict[str, list[float]]:
    """Call each path in turn (direct, router, ...) so that every path sees the same background
    load: on a shared machine, drift between two separate batches is larger than the effect."""
    for i in range(warmup):
        for call in callers.values():
            await call(-1 - i)
    samples: dict[str, list[float]] = {label: [] for label in callers}
    for i in range(n):
        for label, call in callers.items():
            started = time.perf_counter()
            await call(i)
            samples[label].append((time.perf_counter() - started) * 1000)
    return samples


def stats(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.fmean(samples), statistics.median(samples), p99


async def measure(url: str, n: int, redis_url: str | None) -> dict[str, list[float]]:
    client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)
    run = uuid.uuid4().hex[:6]  # fresh topics per run: the cache must not answer

    async def direct(i: int) -> None:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=cast(Any, topic_messages(REQUEST, "Basics", f"direct {run} {i}")),
            max_tokens=3000,
            temperature=0.4,
            response_format={"type": "json_object"},
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        json.loads("".join(parts))

    callers: dict[str, Caller] = {"direct": direct}
    backends: list[tuple[str, Any]] = [("router (in-process)", None)]
    if redis_url:
        import redis.asyncio as redis

        backends.append(("router (Redis)", redis.from_url(redis_url)))
    writers = []
    prefix = f"bench:ai:{run}"
    for label, redis_client in backends:
        writer = RoutedCourseWriter(Router.from_config(config(url, prefix), redis=redis_client))
        writers.append(writer)
        who = Requester(uuid.uuid4(), "standard")

        async def routed(
            i: int, writer: RoutedCourseWriter = writer, who: Requester = who, tag: str = label
        ) -> None:
            await writer.write_topic(REQUEST, "Basics", f"{tag} {run} {i}", who, Usage())

        callers[label] = routed
    try:
        return await interleaved(n, callers)
    finally:
        await client.close()
        for writer in writers:
            await writer.aclose()
        for _, redis_client in backends:
            if redis_client is not None:
                keys = [k async for k in redis_client.scan_iter(match=f"{prefix}:*")]
                if keys:
                    await redis_client.delete(*keys)
                await redis_client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--delays", default="0,200", help="server delays in ms, comma-separated")
    parser.add_argument("--redis", default=None, help="also measure with Redis-backed state")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DELAY_MS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(int(args.serve[0]), float(args.serve[1]))
        return
    print(f"N={args.calls} sequential calls each; times in ms\n")
    print("| server delay | path | mean | p50 | p99 | overhead: mean | p50 | p99 | paired p50 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for delay in (float(d) for d in args.delays.split(",")):
        with fake_server(delay) as url:
            results = asyncio.run(measure(url, args.calls, args.redis))
        base = stats(results["direct"])
        for label, samples in results.items():
            s = stats(samples)
            if label == "direct":
                diff = "| - | - | - | - |"
            else:
                paired = statistics.median(
                    r - d for r, d in zip(samples, results["direct"], strict=True)
                )
                diff = (
                    f"| {s[0] - base[0]:+.2f} | {s[1] - base[1]:+.2f} | {s[2] - base[2]:+.2f} "
                    f"| {paired:+.2f} |"
                )
            print(f"| {delay:g} ms | {label} | {s[0]:.2f} | {s[1]:.2f} | {s[2]:.2f} {diff}")


if __name__ == "__main__":
    main()
