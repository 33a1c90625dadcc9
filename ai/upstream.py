"""One attempt on one OpenAI-compatible endpoint, with the real `openai` client.

The client's own retries are off (`max_retries=0`): the router retries, and two layers of
retries multiply. Time limits are layered:
- the transport (`openai.Timeout`): connect, write, pool, and a read backstop;
- first token: from sending the request until the first content (headers included, so
  "headers, then silence" is caught), enforced with `asyncio.timeout` around each await;
- idle: the gap between two chunks once content flows;
- the router's one deadline per call, around all of it.
A stream that ends without a `finish_reason` was cut: `StreamBroken`, never a short answer.
Every exception of the client is mapped to a typed `AttemptError` here, so the router reasons
about kinds of failure, not about HTTP.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

import openai

from ai.config import ModelEndpoint, Timeouts
from ai.errors import (
    AttemptError,
    AuthFailed,
    BadRequest,
    ContextOverflow,
    RateLimited,
    StreamBroken,
    UpstreamFailure,
    UpstreamTimeout,
    parse_retry_after,
)

_CONTEXT_MARKERS = ("context_length_exceeded", "maximum context length", "context window")


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    finish_reason: str
    tokens_in: int | None  # None: the provider reported no usage
    tokens_out: int | None


def make_client(model: ModelEndpoint, timeouts: Timeouts) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=model.base_url,
        api_key=model.resolve_api_key(),
        max_retries=0,
        timeout=openai.Timeout(
            connect=timeouts.connect,
            # Only a backstop: the precise first-token and idle limits are asyncio timeouts.
            read=max(timeouts.first_token, timeouts.idle),
            write=timeouts.write,
            pool=timeouts.pool,
        ),
    )


def classify(name: str, exc: Exception) -> AttemptError:
    """Map an `openai` exception to the router's attempt errors."""
    if isinstance(exc, openai.APIStatusError):
        status, text = exc.status_code, f"{exc.code or ''} {exc.message}".lower()
        if status in (401, 403):
            return AuthFailed(name, f"HTTP {status}: credentials refused")
        if status == 429:
            if "insufficient_quota" in text:  # billing, not load: waiting will not help
                return AuthFailed(name, "HTTP 429: quota exhausted")
            headers = exc.response.headers
            retry_after = parse_retry_after(headers.get("retry-after"))
            if (ms := headers.get("retry-after-ms")) is not None:
                seconds = parse_retry_after(ms)
                retry_after = None if seconds is None else seconds / 1000
            return RateLimited(name, "HTTP 429: rate limited", retry_after)
        if status in (400, 413, 422) and any(m in text for m in _CONTEXT_MARKERS):
            return ContextOverflow(name, f"HTTP {status}: prompt exceeds the context window")
        if status >= 500 or status == 408:
            return UpstreamFailure(name, f"HTTP {status}")
        return BadRequest(name, f"HTTP {status}: request refused")
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeout(name, "transport timeout")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamFailure(name, "connection failed")
    return UpstreamFailure(name, f"{type(exc).__name__}")


async def call(
    client: openai.AsyncOpenAI,
    model: ModelEndpoint,
    messages: list[dict[str, str]],
    *,
    max_tokens: int,
    temperature: float,
    stream: bool,
    timeouts: Timeouts,
) -> Completion:
    """One request; raises an `AttemptError` subclass on any failure."""
    kwargs: dict[str, Any] = {
        "model": model.model,
        "messages": messages,
        "temperature": temperature,
        model.max_tokens_param: max_tokens,
    }
    if model.capabilities.json_mode:
        kwargs["response_format"] = {"type": "json_object"}
    try:
        if stream and model.capabilities.streaming:
            return await _streamed(client, model, kwargs, timeouts)
        return await _whole(client, model, kwargs, timeouts)
    except AttemptError:
        raise
    except openai.OpenAIError as exc:
        raise classify(model.name, exc) from exc


async def _whole(
    client: openai.AsyncOpenAI, model: ModelEndpoint, kwargs: dict[str, Any], t: Timeouts
) -> Completion:
    # Without streaming nothing arrives before the whole answer: only the call deadline fits.
    timeout = openai.Timeout(connect=t.connect, read=t.total, write=t.write, pool=t.pool)
    response = await cast(Any, client.chat.completions).create(**kwargs, timeout=timeout)
    if not response.choices:
        raise UpstreamFailure(model.name, "response without choices")
    choice = response.choices[0]
    if not choice.finish_reason:
        raise StreamBroken(model.name, "response without finish_reason")
    usage = response.usage
    return Completion(
        text=choice.message.content or "",
        finish_reason=choice.finish_reason,
        tokens_in=usage.prompt_tokens if usage else None,
        tokens_out=usage.completion_tokens if usage else None,
    )


async def _streamed(
    client: openai.AsyncOpenAI, model: ModelEndpoint, kwargs: dict[str, Any], t: Timeouts
) -> Completion:
    loop = asyncio.get_running_loop()
    first_deadline = loop.time() + t.first_token
    if model.capabilities.stream_usage:
        kwargs["stream_options"] = {"include_usage": True}
    try:
        async with asyncio.timeout_at(first_deadline):
            stream = await cast(Any, client.chat.completions).create(**kwargs, stream=True)
    except TimeoutError:
        raise UpstreamTimeout(model.name, "no response within the first-token timeout") from None
    parts: list[str] = []
    finish: str | None = None
    usage: Any = None
    flowing = False  # content (or the finish) has started: from now on the idle limit applies
    try:
        while True:
            deadline = loop.time() + t.idle if flowing else first_deadline
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await stream.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                what = "idle" if flowing else "first-token"
                raise UpstreamTimeout(model.name, f"{what} timeout while streaming") from None
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta is not None and choice.delta.content:
                    parts.append(choice.delta.content)
                    flowing = True
                if choice.finish_reason:
                    finish = choice.finish_reason
                    flowing = True
    finally:
        # Closes the HTTP response (and so the connection) on every path, cancellation too.
        await stream.close()
    if finish is None:
        raise StreamBroken(model.name, "stream ended without finish_reason")
    return Completion(
        text="".join(parts),
        finish_reason=finish,
        tokens_in=usage.prompt_tokens if usage else None,
        tokens_out=usage.completion_tokens if usage else None,
    )
