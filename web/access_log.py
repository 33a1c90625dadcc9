"""One structured access-log line per HTTP request, and the HTTP metrics.

The line (logger `coursegen.access`, JSON like every log line) holds the request id, method,
route, status, duration, client IP, and for GraphQL the operation name and type, the user id,
the outcome and the error codes (set by schema/observe.py in the ASGI scope). It never holds
headers, query strings, bodies or variables: no token or password can reach it.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability import metrics

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracked_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, tracked_send)
        finally:
            metrics.HTTP_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            route = route_label(scope["path"])
            metrics.HTTP_REQUESTS.labels(route, scope["method"], f"{status // 100}xx").observe(
                elapsed
            )
            if route not in ("/metrics", "/health/live", "/health/ready"):
                self._log(scope, route, status, elapsed)

    @staticmethod
    def _log(scope: Scope, route: str, status: int, elapsed: float) -> None:
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
        }
        log.info("request", extra=entry)
