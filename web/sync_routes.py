"""`POST /sync/push` and `POST /sync/pull`: the sync protocol as plain JSON (sync-protocol.md);
`POST /replicache/push` and `POST /replicache/pull`: Replicache's protocol, version 1, onto the
same sync (sync/replicache.py).

Authenticated like the GraphQL API (`Authorization: Bearer <access token>`). Errors of the
request as a whole: 400 INVALID_INPUT, 401 UNAUTHENTICATED, 403 FORBIDDEN (a client group of
another user), 413 (over 1 MiB), 503 TEMPORARILY_UNAVAILABLE; the body is
`{"error": {"code", "message", "field"}}`. The 503 (database out of reach) carries `Retry-After`
and, for a push, also the push answer with every mutation RETRY_LATER.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from replicas import routing as replicas
from resolvers.context import bearer_token
from services import accounts
from services.availability import RETRY_AFTER_SECONDS, is_unavailable
from services.errors import DomainError, ErrorCode
from sync import protocol, replicache
from sync import pull as pulls
from sync import push as pushes
from sync.protocol import MAX_PUSH_BYTES

log = logging.getLogger("coursegen.sync")

STATUS = {
    ErrorCode.INVALID_INPUT: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.TEMPORARILY_UNAVAILABLE: 503,
}


def _error(
    code: ErrorCode, message: str, field: str | None = None, status: int = 400
) -> JSONResponse:
    return JSONResponse({"error": {"code": code.value, "message": message, "field": field}}, status)


Action = Callable[[Request, accounts.Viewer, Any, int], Awaitable[Response]]


async def _handle(request: Request, push: bool, action: Action) -> Response:
    settings = request.app.state.settings
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        return _error(ErrorCode.UNAUTHENTICATED, "Send Authorization: Bearer <token>.", status=401)
    raw = await request.body()
    if len(raw) > MAX_PUSH_BYTES:
        return _error(
            ErrorCode.INVALID_INPUT, "At most 1 MiB per request; send smaller batches.", status=413
        )
    try:
        viewer = await accounts.viewer_from_access_token(settings, token)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            return _error(ErrorCode.INVALID_INPUT, "The body is not JSON.")
        return await action(request, viewer, body, len(raw))
    except DomainError as error:
        return _error(error.code, error.message, error.field, STATUS.get(error.code, 400))
    except Exception as error:
        if pushes.is_transient(error) or is_unavailable(error):
            log.warning("sync request failed: database unavailable", exc_info=True)
            return _unavailable(raw if push else None)
        raise


def _unavailable(push_raw: bytes | None) -> JSONResponse:
    """503 with Retry-After; a push also gets its mutations back as RETRY_LATER (what the
    protocol says of a transient failure), so a client may read either."""
    content: dict[str, Any] = {
        "error": {"code": ErrorCode.TEMPORARILY_UNAVAILABLE.value, "message": "Try again shortly."}
    }
    if push_raw is not None:
        with contextlib.suppress(ValueError, DomainError):
            content.update(protocol.retry_later(json.loads(push_raw), len(push_raw)))
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse(content, status_code=503, headers=headers)


async def _push(request: Request, viewer: accounts.Viewer, body: Any, size: int) -> Response:
    env = pushes.env_from_app(request.app.state, request.app.state.settings)
    try:
        return JSONResponse(await pushes.push(viewer, body, env, size=size))
    finally:
        await replicas.wrote(viewer.id)  # the pusher's next pull reads what it wrote


async def _pull(request: Request, viewer: accounts.Viewer, body: Any, size: int) -> Response:
    page = await pulls.pull(viewer, body, request.app.state.settings)
    return Response(page.as_json(), media_type="application/json")


async def _replicache_push(
    request: Request, viewer: accounts.Viewer, body: Any, size: int
) -> Response:
    env = pushes.env_from_app(request.app.state, request.app.state.settings)
    try:
        answer = await replicache.push(viewer, body, env, size=size)
    finally:
        await replicas.wrote(viewer.id)
    results = answer.get("results", [])
    if any(r["status"] == protocol.RETRY_LATER for r in results):
        # Not all applied: a non-200 makes Replicache push again, with its own backoff; what
        # did apply is answered DUPLICATE then.
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return JSONResponse(answer, status_code=503, headers=headers)
    return JSONResponse(answer)


async def _replicache_pull(
    request: Request, viewer: accounts.Viewer, body: Any, size: int
) -> Response:
    answer = await replicache.pull(viewer, body, request.app.state.settings)
    if isinstance(answer, dict):  # ClientStateNotFound, VersionNotSupported: 200, per Replicache
        return JSONResponse(answer)
    return Response(answer, media_type="application/json")


async def sync_push(request: Request) -> Response:
    return await _handle(request, True, _push)


async def sync_pull(request: Request) -> Response:
    return await _handle(request, False, _pull)


async def replicache_push(request: Request) -> Response:
    return await _handle(request, False, _replicache_push)


async def replicache_pull(request: Request) -> Response:
    return await _handle(request, False, _replicache_pull)


routes = [
    Route("/sync/push", sync_push, methods=["POST"]),
    Route("/sync/pull", sync_pull, methods=["POST"]),
    Route("/replicache/push", replicache_push, methods=["POST"]),
    Route("/replicache/pull", replicache_pull, methods=["POST"]),
]
