"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from tortoise import connections

log = logging.getLogger("coursegen.health")


async def live(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await connections.get("default").execute_query("SELECT 1")
        checks["database"] = "ok"
    except Exception:  # any failure means not ready; the reason goes to the log only
        log.warning("readiness: database check failed", exc_info=True)
        checks["database"] = "unavailable"
    draining = getattr(request.app.state, "draining", False)
    ok = all(v == "ok" for v in checks.values()) and not draining
    body = {"status": "ready" if ok else "not ready", "checks": checks, "draining": draining}
    return JSONResponse(body, status_code=200 if ok else 503)
