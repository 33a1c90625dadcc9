"""The last net for outages: an exception caused by PostgreSQL or Redis being out of reach that
no handler turned into an answer becomes 503 TEMPORARILY_UNAVAILABLE with `Retry-After`
(the GraphQL error shape of web/limits.py), not a 500 and a dropped connection. Other errors
pass through untouched (Starlette answers them with a bare 500; the log has the traceback)."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.availability import MESSAGE, RETRY_AFTER_SECONDS, is_unavailable
from services.errors import ErrorCode
from web.limits import send_error

log = logging.getLogger("coursegen.outages")


class OutageMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as error:
            if started or not is_unavailable(error):
                raise
            log.warning("%s: a backing service is unavailable: %r", scope.get("path"), error)
            await send_error(
                send,
                503,
                ErrorCode.TEMPORARILY_UNAVAILABLE.value,
                MESSAGE,
                [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
            )
