"""`GET /metrics`: the Prometheus text exposition of observability.metrics, with the gauges
that are read at scrape time (live connections, job queue depth by tier, model breakers:
shared in Redis, so a web process reports what its workers' calls did)."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from ai.breaker import BreakerState
from generation import queue_status
from observability import metrics
from services import operations

log = logging.getLogger("coursegen.metrics")


async def endpoint(request: Request) -> Response:
    await refresh_gauges(request.app.state)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def refresh_gauges(state: Any) -> None:
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
    runtime = getattr(state, "runtime", None)
    if runtime is None:
        return
    try:
        for tier, waiting in (await queue_status.waiting_by_tier(runtime.jobs)).items():
            metrics.JOB_QUEUE_DEPTH.labels(tier).set(waiting)
    except Exception:  # a scrape must not fail because Redis is down
        log.warning("metrics: queue depth unavailable", exc_info=True)
    try:
        for endpoint in await operations.model_health(runtime.writer):
            metrics.BREAKER_STATE.labels(endpoint.name).set(
                0 if endpoint.breaker is BreakerState.CLOSED else 1
            )
    except Exception:
        log.warning("metrics: breaker states unavailable", exc_info=True)
