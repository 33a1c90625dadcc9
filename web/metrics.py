"""`GET /metrics`: the Prometheus text exposition of observability.metrics, with the gauges
that are read at scrape time (live connections, job queue depth, model breakers)."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from observability import metrics

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
    depth = getattr(getattr(runtime, "jobs", None), "depth", None)
    if callable(depth):
        try:
            value = depth()
            if inspect.isawaitable(value):
                value = await value
            metrics.JOB_QUEUE_DEPTH.labels("generation").set(value)
        except Exception:  # a scrape must not fail because Redis is down
            log.warning("metrics: queue depth unavailable", exc_info=True)
