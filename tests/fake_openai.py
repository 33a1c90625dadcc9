"""A fake OpenAI-compatible server for the router's tests: real HTTP on 127.0.0.1, random port.

It is a bare ASGI app under uvicorn, run as a task in the test's own event loop, so the tests
drive the real `openai` client over real sockets. It implements POST /v1/chat/completions
(plain JSON and SSE streams with `data: {...}` chunks, `data: [DONE]`, usage in the body or in
a last chunk when `stream_options.include_usage`), and plays scripted faults per model name:
each request pops the model's next `Step`, or uses the model's default step.

It counts hits per model, requests in flight (and the peak), and client disconnects: a request
whose client went away before the response was complete (seen as the ASGI `http.disconnect`
message while the handler was still working). Bare ASGI rather than Starlette because faults
such as "headers, then silence" or "end the stream without [DONE]" need control of each send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from ai.config import RouterConfig

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Step:
    """How to answer one request. Defaults: a 200 with a valid answer and usage."""

    status: int = 200
    retry_after: str | None = None  # header on an error response
    error_code: str | None = None  # e.g. "context_length_exceeded"
    delay: float = 0.0  # before the response headers
    silence: bool = False  # send headers, then nothing until the client leaves
    cut_after: int | None = None  # stream: content chunks before ending without finish/[DONE]
    omit_usage: bool = False
    answer: str | None = None  # the content; None: a valid answer for the prompt
    fenced: bool = False  # wrap the content in prose and a ```json fence
    chunk_delay: float = 0.0  # before every chunk
    stall_after: int | None = None  # stream: after this many content chunks, pause `stall`
    stall: float = 0.0


OK = Step()


class _ClientGone(Exception):
    pass


_COUNTS = re.compile(r"exactly (\d+) subjects.*?exactly (\d+) topic", re.S)


def default_answer(model: str, body: dict[str, Any], full_outlines: bool = False) -> str:
    """A valid outline when the prompt asks for one, else a valid topic lesson.

    Outlines have 2 subjects of 2 topics, or with `full_outlines` the counts the prompt asks.
    """
    prompt = "\n".join(m.get("content", "") for m in body.get("messages", []))
    if '"subjects"' in prompt:
        counts = _COUNTS.search(prompt) if full_outlines else None
        n_subjects, n_topics = (int(counts[1]), int(counts[2])) if counts else (2, 2)
        subjects = [
            {
                "title": f"Subject {i}",
                "summary": f"by {model}",
                "topics": [f"Topic {i}.{t}" for t in range(1, n_topics + 1)],
            }
            for i in range(1, n_subjects + 1)
        ]
        return json.dumps({"subjects": subjects})
    return json.dumps(
        {"content": f"Lesson written by {model}.", "objectives": ["learn"], "estimated_minutes": 10}
    )


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class FakeOpenAI:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.scripts: dict[str, deque[Step]] = defaultdict(deque)
        self.defaults: dict[str, Step] = {}
        self.hits: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()
        self.completed: Counter[str] = Counter()
        self.requests: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.in_flight = 0
        self.max_in_flight = 0
        # Outlines as large as the prompt asks (benchmarks); tests keep the small 2 x 2.
        self.full_outlines = False

    def script(self, model: str, *steps: Step) -> None:
        self.scripts[model].extend(steps)

    def always(self, model: str, step: Step) -> None:
        self.defaults[model] = step

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/v1/chat/completions" or scope["method"] != "POST":
            await _send_json(send, 404, {"error": {"message": "not found"}})
            return
        raw = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw)
        model = body["model"]
        self.hits[model] += 1
        self.requests[model].append(body)
        queue = self.scripts[model]
        step = queue.popleft() if queue else self.defaults.get(model, OK)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        # After the body, `receive()` only returns when the client disconnects (or, once the
        # response is complete, at once; by then we no longer look).
        watcher = asyncio.ensure_future(receive())
        try:
            await self._respond(step, model, body, send, watcher)
            self.completed[model] += 1
        except _ClientGone:
            self.disconnects[model] += 1
        finally:
            self.in_flight -= 1
            watcher.cancel()

    async def _respond(
        self, step: Step, model: str, body: dict[str, Any], send: Send, gone: asyncio.Future[Any]
    ) -> None:
        await _pause(step.delay, gone)
        if step.status != 200:
            headers = [(b"retry-after", step.retry_after.encode())] if step.retry_after else []
            message = "maximum context length exceeded" if step.error_code else "scripted"
            error = {"message": message, "type": "fake", "code": step.error_code}
            await _send_json(send, step.status, {"error": error}, headers)
            return
        answer = (
            step.answer
            if step.answer is not None
            else default_answer(model, body, self.full_outlines)
        )
        if step.fenced:
            answer = f"Here is the JSON you asked for:\n```json\n{answer}\n```\nEnjoy!"
        prompt = "".join(m.get("content", "") for m in body["messages"])
        usage = {
            "prompt_tokens": _tokens(prompt),
            "completion_tokens": _tokens(answer),
            "total_tokens": _tokens(prompt) + _tokens(answer),
        }
        if not body.get("stream"):
            payload = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
            }
            if not step.omit_usage:
                payload["usage"] = usage
            await _send_json(send, 200, payload)
            return
        await _check(gone)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        if step.silence:
            await _pause(60.0, gone)
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        for index, event in enumerate(_chunks(model, answer, usage, step, include_usage)):
            if step.cut_after is not None and index > step.cut_after:
                break  # end the body cleanly, but without finish_reason or [DONE]
            await _pause(step.chunk_delay, gone)
            if step.stall_after is not None and index == step.stall_after + 1:
                await _pause(step.stall, gone)  # content has flowed, then the model goes quiet
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await _check(gone)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _chunks(
    model: str, answer: str, usage: dict[str, int], step: Step, include_usage: bool
) -> Iterator[bytes]:
    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
    size = max(1, len(answer) // 4)
    for start in range(0, len(answer), size):
        piece = answer[start : start + size]
        yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if include_usage and not step.omit_usage:
        yield event([], usage=usage)
    yield b"data: [DONE]\n\n"


async def _pause(seconds: float, gone: asyncio.Future[Any]) -> None:
    if seconds > 0:
        await asyncio.wait({gone}, timeout=seconds)
    await _check(gone)


async def _check(gone: asyncio.Future[Any]) -> None:
    if gone.done() and not gone.cancelled() and gone.result()["type"] == "http.disconnect":
        raise _ClientGone


async def _send_json(
    send: Send,
    status: int,
    payload: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: it runs inside pytest's loop, not as the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def running(fake: FakeOpenAI | None = None) -> AsyncIterator[tuple[FakeOpenAI, str]]:
    """Serve a fake on a free port; yields (fake, base_url ending in /v1)."""
    fake = fake or FakeOpenAI()
    config = uvicorn.Config(
        fake,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        ws="none",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raise what stopped it
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield fake, f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        await task


# --- support for the router tests ------------------------------------------------------------

REDIS_URL = os.environ.get("COURSEGEN_TEST_REDIS_URL")

# Short limits so a whole fault scenario takes well under a second.
FAST_POLICY: dict[str, Any] = {
    "timeouts": {"connect": 1.0, "first_token": 1.0, "idle": 1.0, "total": 8.0},
    "retry": {"max_attempts": 4, "backoff_base": 0.01, "backoff_max": 0.05},
    "breaker": {"window_seconds": 30, "min_calls": 50, "error_rate": 0.5, "cooldown_seconds": 1},
    "cache_ttl_seconds": 60,
}


def endpoint(name: str, base_url: str, **overrides: Any) -> dict[str, Any]:
    """A model entry for the fake: same name upstream, cheap, mid quality, big window."""
    entry: dict[str, Any] = {
        "name": name,
        "model": name,
        "base_url": base_url,
        "api_key": "test-key",
        "price_input_per_mtok": 1.0,
        "price_output_per_mtok": 2.0,
        "quality": {"outline": 0.7, "topic": 0.7},
        "context_window": 100_000,
        "max_output_tokens": 3000,
        "capabilities": {"json_mode": True, "streaming": True},
    }
    entry.update(overrides)
    return entry


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def router_config(models: list[dict[str, Any]], **policy: Any) -> RouterConfig:
    return RouterConfig.model_validate({"models": models, "policy": merge(FAST_POLICY, policy)})


@contextlib.asynccontextmanager
async def redis_or_skip() -> AsyncIterator[tuple[Any, str]]:
    """(client, key prefix) on COURSEGEN_TEST_REDIS_URL; skips when unset. Deletes only the
    keys under this test's own prefix: the database may be shared with other tests."""
    if not REDIS_URL:
        pytest.skip("COURSEGEN_TEST_REDIS_URL is not set")
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    prefix = f"test:ai:{uuid.uuid4().hex[:12]}"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
