"""The plain SSE stream of one job: `GET /events/jobs/{jobId}` (sse-starlette).

- Each progress event is one SSE message (the default `message` type, so `onmessage` gets it):
  `id:` is the event's sequence number, `data:` the event as JSON (the fields of the GraphQL
  `ProgressEvent`). The stream ends after the terminal event.
- Resumes after `Last-Event-ID` (sent by EventSource when it reconnects) or, on a first
  connection, `?after=<seq>`. A client that already has the terminal event gets 204, which
  tells EventSource to stop reconnecting.
- Authentication: `Authorization: Bearer <access token>`, or `?token=` with a stream token from
  the `streamToken(jobId)` mutation (EventSource cannot send headers).
- A heartbeat comment every `live_heartbeat_seconds` (15 s); `retry:` tells EventSource how soon
  to reconnect.
- When the server ends the stream (token expired, session ended, slow client, maximum lifetime,
  restart) it first sends an `event: close` whose data says why (`reason`, `message`);
  EventSource then reconnects and resumes from Last-Event-ID.

Refusals are JSON: 401 (no or bad credentials), 404 (no such job, or not yours to see), 400
(bad `after`), 429 (too many connections). While the server drains, a new stream gets only a
`retry:` and ends, so EventSource reconnects (to another process behind the load balancer).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from resolvers.context import bearer_token
from services.errors import DomainError, ErrorCode
from subscriptions.auth import Credentials, authenticate, authenticate_stream_token
from subscriptions.connections import LiveConnection, LiveRefused
from subscriptions.events import ProgressEvent
from subscriptions.hub import Follower
from subscriptions.live import LiveProgress

_STATUS = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.INVALID_INPUT: 400,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.TEMPORARILY_UNAVAILABLE: 503,
}


def event_json(event: ProgressEvent) -> dict[str, Any]:
    """A progress event as the transports send it (the GraphQL `ProgressEvent` fields)."""
    return {
        "seq": event.seq,
        "type": event.type,
        "jobId": str(event.job_id),
        "progress": event.progress,
        "stage": event.stage,
        "message": event.message,
        "courseId": str(event.course_id) if event.course_id else None,
        "at": datetime.fromtimestamp(event.at, UTC).isoformat(),
        "data": event.data or None,
    }


class _Encoded:
    """Each event encoded once per process: every follower of a job gets the same objects."""

    def __init__(self, size: int = 256) -> None:
        self._cache: OrderedDict[int, tuple[ProgressEvent, bytes]] = OrderedDict()
        self._size = size

    def __call__(self, event: ProgressEvent) -> bytes:
        cached = self._cache.get(id(event))
        if cached is not None and cached[0] is event:
            return cached[1]
        encoded = b"id: %d\r\ndata: %s\r\n\r\n" % (event.seq, orjson.dumps(event_json(event)))
        self._cache[id(event)] = (event, encoded)
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return encoded


encode_event = _Encoded()


def _error(status: int, code: str, message: str, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def _domain_error(error: DomainError) -> Response:
    return _error(_STATUS.get(error.code, 400), error.code.value, error.message, error.retry_after)


def _position(request: Request) -> int | None:
    """Where to resume: Last-Event-ID (EventSource's reconnects) wins over `?after=`."""
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


async def _credentials(request: Request, live: LiveProgress, job_id: uuid.UUID) -> Credentials:
    header = bearer_token(request.headers.get("authorization"))
    if header is not None:
        return await authenticate(live.settings, header)
    token = request.query_params.get("token")
    if token:
        return await authenticate_stream_token(live.settings, token, job_id)
    raise DomainError(
        ErrorCode.UNAUTHENTICATED,
        "Send `Authorization: Bearer <access token>`, or `?token=` from streamToken(jobId).",
    )


def _headers() -> dict[str, str]:
    return {"Cache-Control": "no-cache, no-transform"}


def _draining(retry_ms: int) -> Response:
    async def goodbye() -> AsyncIterator[bytes]:
        yield b": the server is restarting; reconnect\r\nretry: %d\r\n\r\n" % retry_ms

    return EventSourceResponse(goodbye(), ping=0, headers=_headers())


async def job_events(request: Request) -> Response:
    live: LiveProgress = request.app.state.live
    settings = live.settings
    try:
        job_id = uuid.UUID(request.path_params["job_id"])
    except ValueError:
        return _error(404, ErrorCode.NOT_FOUND.value, "No generation job with that id.")
    after = _position(request)
    if after is None:
        return _error(400, ErrorCode.INVALID_INPUT.value, "Last-Event-ID/after: 0 or more.")
    if live.draining:
        return _draining(settings.live_sse_retry_ms)
    try:
        credentials = await _credentials(request, live, job_id)
    except DomainError as error:
        return _domain_error(error)
    try:
        connection = live.open_connection(credentials, "sse", bounded_lifetime=True)
    except LiveRefused as refused:
        if refused.http_status == 503:
            return _draining(settings.live_sse_retry_ms)
        return _error(refused.http_status, refused.code, refused.message, refused.retry_after)
    try:
        follower = await live.follow(credentials.viewer, job_id, after, connection)
        more = await follower.prepare()
    except DomainError as error:
        connection.release()
        return _domain_error(error)
    except BaseException:
        connection.release()
        raise
    if not more:
        await follower.aclose()
        connection.release()
        return Response(status_code=204)
    return EventSourceResponse(
        _stream(follower, connection, settings.live_sse_retry_ms),
        ping=settings.live_heartbeat_seconds,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        send_timeout=settings.live_send_timeout_seconds,
        headers=_headers(),
    )


async def _stream(
    follower: Follower, connection: LiveConnection, retry_ms: int
) -> AsyncIterator[bytes]:
    try:
        yield b"retry: %d\r\n\r\n" % retry_ms
        while True:
            event = await follower.next()
            if event is None:
                reason = connection.reason
                if reason is not None:
                    data = orjson.dumps({"reason": reason.code, "message": reason.message})
                    yield b"event: close\r\ndata: %s\r\n\r\n" % data
                return
            yield encode_event(event)
    finally:
        await follower.aclose()
        connection.release()
