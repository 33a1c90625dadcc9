"""GraphQL over SSE (the graphql-sse protocol), both modes, on Starlette routes.

Served at `/graphql/stream`, and at `/graphql` for requests that are SSE-shaped (PUT, DELETE,
`Accept: text/event-stream`, or carrying a reservation token); other `/graphql` requests go to
Strawberry's view unchanged.

Distinct connections mode: `POST` (or `GET` with the operation in the query string) with
`Accept: text/event-stream` runs one operation and streams its results as `next` events, then
`complete`, then ends. Validation errors arrive as a `next` event carrying `errors`.

Single connection mode:
- `PUT` reserves an event stream for the authenticated user: 201 with the reservation token
  (text/plain). A reservation not taken within `RESERVATION_SECONDS` lapses.
- `GET` with `Accept: text/event-stream` and the token (`X-GraphQL-Event-Stream-Token` header or
  `?token=`) opens the stream: one per reservation (409 for a second).
- `POST` with the token and `extensions.operationId` adds an operation: 202, its results go to
  the stream as `next` events `{id, payload}`, then `complete {id}`. Bad requests and
  validation errors answer 400 with `errors`, as GraphQL over HTTP says.
- `DELETE ?operationId=` stops an operation: 200.

Auth: `Authorization: Bearer <access token>` on the PUT (single mode) or the operation request
(distinct mode). The stream is a live connection (see `subscriptions.connections`): it ends
without `complete` when its token expires, the client reads too slowly, the stream reaches
`live_sse_max_lifetime_seconds`, or the server restarts; a comment line says why. graphql-sse
clients then reconnect and subscribe again; keeping `variables.after` at the last `seq`
received makes them resume without loss or repetition. A reservation lives in the process that
made it: behind a load balancer, route by the token (or use distinct mode or WebSocket).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import GraphQLError, parse, validate
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.http import process_result
from strawberry.types.graphql import OperationType

from resolvers.context import RequestContext, bearer_token, build_context
from resolvers.loaders import Loaders
from services.errors import DomainError
from settings import Settings
from subscriptions.auth import Credentials, authenticate
from subscriptions.connections import SLOW_CONSUMER, LiveConnection, LiveRefused
from subscriptions.live import LiveProgress

log = logging.getLogger("coursegen.live")

TOKEN_HEADER = "x-graphql-event-stream-token"  # noqa: S105 -- a header name
# As the schema masks unexpected errors (schema/build.py); this module gets the schema from app.py.
MASKED_MESSAGE = "Unexpected error. It has been logged; quote the request id to support."
RESERVATION_SECONDS = 30.0


def _errors(status: int, message: str, code: str | None = None) -> Response:
    error: dict[str, Any] = {"message": message}
    if code:
        error["extensions"] = {"code": code}
    return JSONResponse({"errors": [error]}, status_code=status)


def _refused(refused: LiveRefused) -> Response:
    response = _errors(refused.http_status, refused.message, refused.code)
    if refused.retry_after:
        response.headers["Retry-After"] = str(refused.retry_after)
    return response


@dataclass
class _Params:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None


class _BadRequest(Exception):
    pass


async def _params(request: Request) -> _Params:
    if request.method == "GET":
        raw: dict[str, Any] = dict(request.query_params)
        for key in ("variables", "extensions"):
            if raw.get(key):
                try:
                    raw[key] = orjson.loads(raw[key])
                except orjson.JSONDecodeError:
                    raise _BadRequest(f"`{key}` is not valid JSON") from None
    else:
        if "application/json" not in request.headers.get("content-type", ""):
            raise _BadRequest("Send the operation as application/json")
        try:
            raw = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise _BadRequest("The body is not valid JSON") from None
        if not isinstance(raw, dict):
            raise _BadRequest("The body must be a JSON object")
    query = raw.get("query")
    if not isinstance(query, str):
        raise _BadRequest("Missing query")
    variables, extensions = raw.get("variables"), raw.get("extensions")
    if variables is not None and not isinstance(variables, dict):
        raise _BadRequest("Invalid variables")
    if extensions is not None and not isinstance(extensions, dict):
        raise _BadRequest("Invalid extensions")
    name = raw.get("operationName")
    return _Params(query, variables, name if isinstance(name, str) else None, extensions)


@dataclass(eq=False)
class _EventStream:
    """One SSE response: the operations writing to it and what waits to be written."""

    connection: LiveConnection
    credentials: Credentials
    distinct: bool
    token: str | None = None
    open: bool = False
    outbox: deque[bytes] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    operations: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    finished: bool = False  # distinct mode: the one operation completed

    def __post_init__(self) -> None:
        self.connection.on_close(self.ready.set)

    def push(self, chunk: bytes) -> None:
        if len(self.outbox) >= self.connection.queue_limit:
            self.connection.close(SLOW_CONSUMER)
            return
        self.outbox.append(chunk)
        self.ready.set()

    def stop(self, operation_id: str) -> None:
        task = self.operations.pop(operation_id, None)
        if task is not None:
            task.cancel()

    def end(self) -> None:
        for operation_id in list(self.operations):
            self.stop(operation_id)
        self.connection.release()
        self.ready.set()


class GraphQLSSE:
    """The ASGI app of the graphql-sse protocol; it executes on the schema `app.py` gives it."""

    def __init__(self, schema: Any, settings: Settings) -> None:
        self.schema = schema
        self.settings = settings
        self.reservations: dict[str, _EventStream] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.dispatch(request)
        await response(scope, receive, send)

    @staticmethod
    def handles(scope: Scope) -> bool:
        """Whether an HTTP request to /graphql speaks graphql-sse rather than plain GraphQL."""
        if scope["type"] != "http":
            return False
        if scope["method"] in ("PUT", "DELETE"):
            return True
        headers = dict(scope.get("headers") or [])
        if TOKEN_HEADER.encode() in headers:
            return True
        return b"text/event-stream" in headers.get(b"accept", b"")

    async def dispatch(self, request: Request) -> Response:
        live: LiveProgress = request.app.state.live
        token = request.headers.get(TOKEN_HEADER) or request.query_params.get("token")
        wants_stream = "text/event-stream" in request.headers.get("accept", "")
        method = request.method
        if method == "PUT":
            return await self._reserve(request, live)
        if method == "DELETE":
            return self._stop(request, token)
        if method not in ("GET", "POST"):
            return Response(status_code=405, headers={"Allow": "GET, POST, PUT, DELETE"})
        if wants_stream:
            if token:
                return self._open_reserved(token)
            return await self._distinct(request, live)
        if token:
            return await self._add_operation(request, token, live)
        return _errors(404, "Stream not found: send Accept: text/event-stream, or a token.")

    # -- authentication and live connections ------------------------------------------------

    async def _open_connection(
        self, request: Request, live: LiveProgress
    ) -> tuple[Credentials, LiveConnection] | Response:
        access_token = bearer_token(request.headers.get("authorization"))
        if access_token is None:
            return _errors(401, "Send Authorization: Bearer <access token>.", "UNAUTHENTICATED")
        try:
            credentials = await authenticate(self.settings, access_token)
        except DomainError as error:
            return _errors(401, error.message, error.code.value)
        try:
            connection = live.open_connection(credentials, "graphql-sse", bounded_lifetime=True)
        except LiveRefused as refused:
            return _refused(refused)
        return credentials, connection

    # -- single connection mode --------------------------------------------------------------

    async def _reserve(self, request: Request, live: LiveProgress) -> Response:
        opened = await self._open_connection(request, live)
        if isinstance(opened, Response):
            return opened
        credentials, connection = opened
        token = secrets.token_urlsafe(32)
        stream = _EventStream(connection, credentials, distinct=False, token=token)
        self.reservations[token] = stream
        asyncio.get_running_loop().call_later(RESERVATION_SECONDS, self._lapse, token)
        return PlainTextResponse(token, status_code=201)

    def _lapse(self, token: str) -> None:
        stream = self.reservations.get(token)
        if stream is not None and not stream.open:
            del self.reservations[token]
            stream.end()

    def _open_reserved(self, token: str) -> Response:
        stream = self.reservations.get(token)
        if stream is None:
            return _errors(404, "Stream not found")
        if stream.open:
            return _errors(409, "Stream already open")
        stream.open = True
        return self._respond(stream)

    def _stop(self, request: Request, token: str | None) -> Response:
        stream = self.reservations.get(token) if token else None
        if stream is None:
            return _errors(404, "Stream not found")
        operation_id = request.query_params.get("operationId")
        if not operation_id:
            return _errors(400, "Operation ID is missing")
        stream.stop(operation_id)
        return Response(status_code=200)

    async def _add_operation(self, request: Request, token: str, live: LiveProgress) -> Response:
        stream = self.reservations.get(token)
        if stream is None:
            return _errors(404, "Stream not found")
        try:
            params = await _params(request)
        except _BadRequest as error:
            return _errors(400, str(error))
        operation_id = str((params.extensions or {}).get("operationId") or "")
        if not operation_id:
            return _errors(400, "Operation ID is missing")
        if operation_id in stream.operations:
            return _errors(409, "Operation with ID already exists")
        try:
            document = parse(params.query)
        except GraphQLError as error:
            return JSONResponse({"errors": [error.formatted]}, status_code=400)
        problems = validate(self.schema._schema, document)
        if problems:
            return JSONResponse({"errors": [p.formatted for p in problems]}, status_code=400)
        context = await self._context(request, stream, live)
        self._start(stream, operation_id, params, context, request.method)
        return Response(status_code=202)

    # -- distinct connections mode -------------------------------------------------------------

    async def _distinct(self, request: Request, live: LiveProgress) -> Response:
        try:
            params = await _params(request)
        except _BadRequest as error:
            return _errors(400, str(error))
        opened = await self._open_connection(request, live)
        if isinstance(opened, Response):
            return opened
        credentials, connection = opened
        stream = _EventStream(connection, credentials, distinct=True, open=True)
        context = await self._context(request, stream, live)
        self._start(stream, "", params, context, request.method)
        return self._respond(stream)

    # -- execution and streaming ---------------------------------------------------------------

    async def _context(
        self, request: Request, stream: _EventStream, live: LiveProgress
    ) -> RequestContext:
        runtime = request.app.state.runtime
        request_id = request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex
        context = await build_context(
            request,
            None,
            self.settings,
            request_id,
            None,
            runtime.jobs,
            runtime.events,
            runtime.rate_limits,
        )
        context.viewer = stream.credentials.viewer
        context.loaders = Loaders(context.viewer.id)
        context.live = live
        context.live_connection = stream.connection
        return context

    def _start(
        self,
        stream: _EventStream,
        operation_id: str,
        params: _Params,
        context: RequestContext,
        method: str,
    ) -> None:
        allowed = OperationType.from_http("GET" if method == "GET" else "POST")
        task = asyncio.create_task(self._run(stream, operation_id, params, context, allowed))
        stream.operations[operation_id] = task

    async def _run(
        self,
        stream: _EventStream,
        operation_id: str,
        params: _Params,
        context: RequestContext,
        allowed: set[OperationType],
    ) -> None:
        try:
            results = await self.schema.stream(
                params.query,
                variable_values=params.variables,
                context_value=context,
                operation_name=params.operation_name,
                operation_extensions=params.extensions,
                allowed_operation_types=allowed,
            )
            async with contextlib.aclosing(results):
                async for result in results:
                    payload = process_result(result)
                    data: Any = (
                        payload if stream.distinct else {"id": operation_id, "payload": payload}
                    )
                    stream.push(b"event: next\r\ndata: %s\r\n\r\n" % orjson.dumps(data))
            complete = b"" if stream.distinct else orjson.dumps({"id": operation_id})
            stream.push(b"event: complete\r\ndata: %s\r\n\r\n" % complete)
            stream.operations.pop(operation_id, None)
            if stream.distinct:
                stream.finished = True
                stream.ready.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("graphql-sse operation failed", extra={"request_id": context.request_id})
            stream.operations.pop(operation_id, None)
            failed: dict[str, Any] = {"data": None, "errors": [{"message": MASKED_MESSAGE}]}
            data = failed if stream.distinct else {"id": operation_id, "payload": failed}
            stream.push(b"event: next\r\ndata: %s\r\n\r\n" % orjson.dumps(data))
            complete = b"" if stream.distinct else orjson.dumps({"id": operation_id})
            stream.push(b"event: complete\r\ndata: %s\r\n\r\n" % complete)
            stream.finished = stream.distinct

    def _respond(self, stream: _EventStream) -> Response:
        settings = self.settings
        return EventSourceResponse(
            self._write(stream),
            ping=settings.live_heartbeat_seconds,
            ping_message_factory=lambda: ServerSentEvent(comment="ping"),
            send_timeout=settings.live_send_timeout_seconds,
            headers={"Cache-Control": "no-cache, no-transform"},
        )

    async def _write(self, stream: _EventStream) -> AsyncIterator[bytes]:
        try:
            yield b":\r\n\r\n"  # some browsers wait for a first chunk before they report open
            while True:
                while stream.outbox:
                    yield stream.outbox.popleft()
                if stream.finished:
                    return
                reason = stream.connection.reason
                if reason is not None:
                    # No `complete` for the open operations: the client reconnects and
                    # subscribes again (resuming with `after`).
                    yield b": closed (%s): %s\r\n\r\n" % (
                        reason.code.encode(),
                        reason.message.encode(),
                    )
                    return
                stream.ready.clear()
                await stream.ready.wait()
        finally:
            if stream.token is not None:
                self.reservations.pop(stream.token, None)
            stream.end()
