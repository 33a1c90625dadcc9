"""One structured access-log line per HTTP request, and the HTTP metrics.

The line (logger `coursegen.access`, JSON like every log line) holds the request id, method,
route, status, duration, client IP, SQL statements sent (observability/sql.py), and for
GraphQL the operation name and type, the user id, the outcome and the error codes (set by
schema/observe.py in the ASGI scope). It never holds headers, query strings, bodies or
variables: no token or password can reach it.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability import metrics, sql

log = logging.getLogger("coursegen.access")

_ROUTES = ("/graphql/stream", "/graphql", "/health/live", "/health/ready", "/metrics")


def route_label(path: str) -> str:
    if path in _ROUTES:
        return path
    if path.startswith("/events/jobs/"):
        return "/events/jobs/{job_id}"
    return "other"


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        sql.install()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        streamed = False

        async def tracked_send(message: Message) -> None:
            nonlocal status, streamed
            if message["type"] == "http.response.start":
                status = message["status"]
                content_type = dict(message.get("headers") or ()).get(b"content-type", b"")
                streamed = content_type.startswith((b"text/event-stream", b"multipart/mixed"))
            await send(message)

        metrics.HTTP_IN_FLIGHT.inc()
        with sql.counting() as statements:
            try:
                await self.app(scope, receive, tracked_send)
            finally:
                metrics.HTTP_IN_FLIGHT.dec()
                elapsed = time.perf_counter() - started
                route = route_label(scope["path"])
                metrics.HTTP_REQUESTS.labels(route, scope["method"], f"{status // 100}xx").observe(
                    elapsed
                )
                # A stream's statements are spread over its lifetime: not one request's worth.
                if route == "/graphql" and not streamed:
                    metrics.SQL_STATEMENTS.observe(statements.value)
                if route not in ("/metrics", "/health/live", "/health/ready"):
                    self._log(scope, route, status, elapsed, statements.value)

    @staticmethod
    def _log(scope: Scope, route: str, status: int, elapsed: float, statements: int) -> None:
        state = scope.get("state", {})
        graphql = state.get("graphql") or {}
        client = scope.get("client")
        entry = {
            "method": scope["method"],
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "client_ip": client[0] if client else None,
            "user_id": state.get("user_id"),
            "operation": graphql.get("operation"),
            "operation_type": graphql.get("operation_type"),
            "outcome": graphql.get("outcome") or ("ok" if status < 400 else "error"),
            "error_codes": graphql.get("error_codes") or [],
            "sql_statements": statements,
        }
        log.info("request", extra=entry)
