"""Request-level limits as ASGI middleware: body size and time to first byte.

- Bodies above `max_body_bytes` are refused with 413 before anything parses them: at once
  when `Content-Length` says so, else as soon as the streamed body goes past the limit.
- A request that has not started its response `request_timeout_seconds` after it came in is
  cancelled (its database work with it; the connection goes back to the pool) and answered
  504. Once a response has started there is no deadline: event streams are long by design.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability import metrics

log = logging.getLogger("coursegen.limits")


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    body = error_body(code, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        metrics.LIMIT_REFUSALS.labels("body").inc()
        await send_error(
            send,
            413,
            "PAYLOAD_TOO_LARGE",
            f"The request body is larger than {self.max_bytes} bytes.",
        )


class TimeoutMiddleware:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        deadline: asyncio.Timeout | None = None

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                started = True
                if deadline is not None:
                    deadline.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(self.seconds) as deadline:
                await self.app(scope, receive, tracked_send)
        except TimeoutError:
            if started:
                raise
            metrics.LIMIT_REFUSALS.labels("timeout").inc()
            log.warning("request timed out after %.1f s: %s", self.seconds, scope.get("path"))
            await send_error(
                send,
                504,
                "REQUEST_TIMEOUT",
                f"The request took longer than {self.seconds:g} s and was stopped; "
                "ask for less or try again.",
            )


class WebSocketMessageLimitMiddleware:
    """Closes a WebSocket with 1009 (message too big) when a message exceeds `max_bytes`.

    uvicorn enforces its own `ws_max_size` (set from the same setting by `manage.py serve`)
    before a frame is assembled; this is the same bound for any other server or launch line,
    where the default (16 MiB with uvicorn) would otherwise let one message hold that much
    memory per connection."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                data = message.get("bytes") or message.get("text") or ""
                size = len(data) if isinstance(data, bytes) else len(data.encode())
                if size > self.max_bytes:
                    log.info("websocket message of %d bytes refused", size)
                    await send({"type": "websocket.close", "code": 1009})
                    return {"type": "websocket.disconnect", "code": 1009}
            return message

        await self.app(scope, limited_receive, send)
