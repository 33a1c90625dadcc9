"""Response compression: zstd, brotli or gzip, chosen from `Accept-Encoding` (in that order of
preference), for bodies of at least `minimum_size` bytes.

Event streams (`text/event-stream`) and responses that already have a `Content-Encoding` pass
through untouched and unbuffered: each event reaches the client when it is sent.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import brotli
import zstandard
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFERENCE = ("zstd", "br", "gzip")


def choose_encoding(accept_encoding: str) -> str | None:
    offered: dict[str, float] = {}
    for part in accept_encoding.split(","):
        token, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        if token:
            offered[token.strip().lower()] = quality
    for encoding in PREFERENCE:
        if offered.get(encoding, offered.get("*", 0.0)) > 0:
            return encoding
    return None


class _Compressor:
    def __init__(self, encoding: str) -> None:
        self.compress: Callable[[bytes], bytes]
        self.finish: Callable[[], bytes]
        if encoding == "zstd":
            zstd = zstandard.ZstdCompressor(level=3).compressobj()
            self.compress, self.finish = zstd.compress, zstd.flush
        elif encoding == "br":
            br = brotli.Compressor(quality=4)
            self.compress, self.finish = br.process, br.finish
        else:
            gz = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            self.compress, self.finish = gz.compress, gz.flush


class CompressionMiddleware:
    def __init__(self, app: ASGIApp, minimum_size: int = 1024) -> None:
        self.app = app
        self.minimum_size = minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        encoding = choose_encoding(Headers(scope=scope).get("accept-encoding", ""))
        if encoding is None:
            await self.app(scope, receive, send)
            return
        responder = _Responder(send, encoding, self.minimum_size)
        await self.app(scope, receive, responder.send)


class _Responder:
    def __init__(self, send: Send, encoding: str, minimum_size: int) -> None:
        self.downstream = send
        self.encoding = encoding
        self.minimum_size = minimum_size
        self.start: Message | None = None
        self.passthrough = False
        self.buffer = b""
        self.compressor: _Compressor | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = Headers(raw=message.get("headers", []))
            media = headers.get("content-type", "")
            if "text/event-stream" in media or "content-encoding" in headers:
                self.passthrough = True
                await self.downstream(message)
                return
            self.start = message
            return
        if self.passthrough or message["type"] != "http.response.body":
            await self.downstream(message)
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.compressor is None:
            self.buffer += body
            if len(self.buffer) < self.minimum_size and more:
                return
            if len(self.buffer) < self.minimum_size:  # the whole body, and small
                await self._start(compressed=False)
                await self.downstream({"type": "http.response.body", "body": self.buffer})
                return
            self.compressor = _Compressor(self.encoding)
            await self._start(compressed=True, whole=not more)
            body, self.buffer = self.buffer, b""
        chunk = self.compressor.compress(body)
        if not more:
            chunk += self.compressor.finish()
        if chunk or not more:
            await self.downstream({"type": "http.response.body", "body": chunk, "more_body": more})

    async def _start(self, *, compressed: bool, whole: bool = False) -> None:
        assert self.start is not None
        headers = MutableHeaders(raw=list(self.start.get("headers", [])))
        headers.add_vary_header("Accept-Encoding")
        if compressed:
            headers["Content-Encoding"] = self.encoding
            del headers["Content-Length"]
        self.start["headers"] = headers.raw
        await self.downstream(self.start)
