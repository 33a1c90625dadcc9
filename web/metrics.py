"""`GET /metrics`: the Prometheus text exposition of observability.metrics.

A scrape only renders: the gauges of shared state (job queue depth by tier, model breakers,
both in Redis, so a web process reports what its workers' calls did) are refreshed by a
background task every `metrics_refresh_seconds`, so scrapes add no load on Redis and cannot
hang on it. Live connection counts are in-process and read at scrape time.

With `METRICS_TOKEN` the endpoint wants `Authorization: Bearer <token>`; with `METRICS_PORT`
it is not on the public port at all (served there by prometheus_client's own server).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ai.breaker import BreakerState
from generation import queue_status
from observability import metrics
from services import operations

log = logging.getLogger("coursegen.metrics")


async def endpoint(request: Request) -> Response:
    settings = request.app.state.settings
    if settings.metrics_port:
        return JSONResponse(
            {"error": {"code": "NOT_FOUND", "message": "Metrics are served on another port."}},
            status_code=404,
        )
    if settings.metrics_token and not _authorized(request, settings.metrics_token):
        return JSONResponse(
            {"error": {"code": "UNAUTHENTICATED", "message": "A metrics token is required."}},
            status_code=401,
            headers={"www-authenticate": "Bearer"},
        )
    refresh_live_gauges(request.app.state)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _authorized(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), token.encode())


def refresh_live_gauges(state: Any) -> None:
    live = getattr(getattr(state, "live", None), "registry", None)
    for attribute, gauge in (
        ("connection_count", metrics.ACTIVE_CONNECTIONS),
        ("subscription_count", metrics.ACTIVE_SUBSCRIPTIONS),
    ):
        value = getattr(live, attribute, None)
        if callable(value):
            value = value()
        if isinstance(value, int):
            gauge.set(value)


async def refresh_shared_gauges(runtime: Any) -> None:
    try:
        for tier, waiting in (await queue_status.waiting_by_tier(runtime.jobs)).items():
            metrics.JOB_QUEUE_DEPTH.labels(tier).set(waiting)
    except Exception:  # Redis down: the gauges keep their last values
        log.warning("metrics: queue depth unavailable", exc_info=True)
    try:
        for endpoint in await operations.model_health(runtime.writer):
            metrics.BREAKER_STATE.labels(endpoint.name).set(
                0 if endpoint.breaker is BreakerState.CLOSED else 1
            )
    except Exception:
        log.warning("metrics: breaker states unavailable", exc_info=True)


async def keep_refreshed(state: Any, seconds: float) -> None:
    """The background refresher, run for the life of the web process."""
    while True:
        runtime = getattr(state, "runtime", None)
        if runtime is not None:
            await refresh_shared_gauges(runtime)
        refresh_live_gauges(state)
        await asyncio.sleep(seconds)
