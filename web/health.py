"""Liveness and readiness probes.

`/health/live`: the process answers. `/health/ready`: it can serve: the database answers, every
migration of models/migrations is applied, Redis answers (when configured), and the process is
not draining. Each check is bounded by a short timeout; reasons go to the log only.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse
from tortoise import connections

log = logging.getLogger("coursegen.health")

CHECK_TIMEOUT_SECONDS = 2.0
MIGRATIONS = Path(__file__).resolve().parent.parent / "models" / "migrations"


def expected_migrations() -> set[str]:
    return {p.stem for p in MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.py")}


async def live(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _database() -> dict[str, str]:
    connection = connections.get("default")
    await connection.execute_query("SELECT 1")
    _, rows = await connection.execute_query(
        "SELECT name FROM tortoise_migrations WHERE app = 'models'"
    )
    applied = {row["name"] for row in rows}
    missing = expected_migrations() - applied
    return {"database": "ok", "migrations": "ok" if not missing else "pending"}


async def ready(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        checks.update(await asyncio.wait_for(_database(), CHECK_TIMEOUT_SECONDS))
    except Exception:  # any failure means not ready; the reason goes to the log only
        log.warning("readiness: database check failed", exc_info=True)
        checks["database"] = "unavailable"
    runtime = getattr(request.app.state, "runtime", None)
    client = getattr(runtime, "redis", None)
    if client is not None:
        try:
            await asyncio.wait_for(client.ping(), CHECK_TIMEOUT_SECONDS)
            checks["redis"] = "ok"
        except Exception:
            log.warning("readiness: redis check failed", exc_info=True)
            checks["redis"] = "unavailable"
    draining = getattr(request.app.state, "draining", False)
    ok = all(v == "ok" for v in checks.values()) and not draining
    body = {"status": "ready" if ok else "not ready", "checks": checks, "draining": draining}
    return JSONResponse(body, status_code=200 if ok else 503)
