"""Strawberry's ASGI view with our per-request context (viewer, loaders, request id).

Over HTTP it behaves as Strawberry's view does. Over WebSocket (`graphql-transport-ws` and the
legacy `graphql-ws`) a connection is a live connection of `subscriptions.connections`:
- it authenticates in `connection_init`: the payload's `authorization` ("Bearer …", also
  `token` / `accessToken`), else the handshake's `Authorization` header; without a token it is
  closed with 4401, with a refused or expired one with 4403 (graphql-ws clients retry 4403,
  asking `connectionParams` again: that is where a client brings a refreshed token);
- it must send `connection_init` within `live_connection_init_timeout_seconds` (4408);
- the server closes it with a clear reason when its token expires or its session ends (4403),
  when it reads too slowly (1013), when the user has too many connections (1008) and when the
  server restarts (1012); clients reconnect and resume with `after`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Any

from cross_web import AsyncHTTPRequestAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyConnectionInitMessage,
)
from strawberry.types.unset import UNSET, UnsetType

from resolvers.context import RequestContext, bearer_token, build_context
from resolvers.loaders import Loaders
from services.availability import RETRY_AFTER_SECONDS
from services.errors import DomainError, ErrorCode
from settings import Settings
from subscriptions.auth import authenticate
from subscriptions.connections import LiveConnection, LiveRefused, restarting, unauthenticated
from web import persisted_queries
from web.persisted_queries import PersistedQueries, PersistedQueryError, TrustedDocuments


def _close_reason(message: str) -> str:
    """A WebSocket close reason is at most 123 bytes."""
    encoded = message.encode()
    return message if len(encoded) <= 123 else encoded[:120].decode(errors="ignore") + "..."


def _payload_token(params: dict[str, Any] | None) -> str | None:
    if not params:
        return None
    for key in ("authorization", "Authorization", "token", "accessToken", "access_token"):
        value = params.get(key)
        if isinstance(value, str) and value.strip():
            return bearer_token(value) if " " in value.strip() else value.strip()
    return None


def _unavailable_only(data: Any) -> bool:
    """A response with no data whose every error is TEMPORARILY_UNAVAILABLE."""
    if not isinstance(data, dict) or data.get("data") is not None or not data.get("errors"):
        return False
    return all(
        (error.get("extensions") or {}).get("code") == ErrorCode.TEMPORARILY_UNAVAILABLE.value
        for error in data["errors"]
    )


def _release(context: RequestContext) -> None:
    if context.live_connection is not None:
        context.live_connection.release()


class LiveTransportWSHandler(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """`graphql-transport-ws` with live-connection auth, limits and closing."""

    _watchdog: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            _release(self.context)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except LiveRefused as refused:
            await self.websocket.close(code=refused.ws_code, reason=_close_reason(refused.message))
            return
        connection = self.context.live_connection
        if connection is not None and self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(connection))

    async def _watch(self, connection: LiveConnection) -> None:
        await connection.closed.wait()
        # Stop the operations first: none may send `complete`, which would tell the client
        # its subscription is over instead of letting it resubscribe after reconnecting.
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        reason = connection.reason
        if reason is not None:
            with contextlib.suppress(Exception):
                await self.websocket.close(code=reason.ws_code, reason=reason.message)


class LiveLegacyWSHandler(BaseGraphQLWSHandler[RequestContext, None]):
    """The legacy `graphql-ws` subprotocol with the same auth, limits and closing."""

    _watchdog: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        view: Any = self.view
        timeout = asyncio.create_task(
            self._init_timeout(view.settings.live_connection_init_timeout_seconds)
        )
        try:
            await super().handle()
        finally:
            timeout.cancel()
            if self._watchdog is not None:
                self._watchdog.cancel()
            _release(self.context)

    async def _init_timeout(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if not self.connection_acknowledged:
            with contextlib.suppress(Exception):
                await self.websocket.close(code=4408, reason="Connection initialisation timeout")

    async def handle_connection_init(self, message: LegacyConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except LiveRefused as refused:
            with contextlib.suppress(Exception):
                await self.send_message(
                    {
                        "type": "connection_error",
                        "payload": {"message": refused.message, "code": refused.code},
                    }
                )
                await self.websocket.close(
                    code=refused.ws_code, reason=_close_reason(refused.message)
                )
            return
        connection = self.context.live_connection
        if connection is not None and self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(connection))

    async def _watch(self, connection: LiveConnection) -> None:
        await connection.closed.wait()
        reason = connection.reason
        if reason is not None:
            # Closed first: this protocol's handler sends `complete` for cancelled operations,
            # which must not reach the client (it would not resubscribe after reconnecting).
            with contextlib.suppress(Exception):
                await self.websocket.close(code=reason.ws_code, reason=reason.message)


class CoursegenGraphQL(GraphQL[RequestContext, None]):
    graphql_transport_ws_handler_class = LiveTransportWSHandler
    graphql_ws_handler_class = LiveLegacyWSHandler

    def __init__(
        self,
        schema: Any,
        settings: Settings,
        trusted: TrustedDocuments | None = None,
        **options: Any,
    ) -> None:
        options.setdefault(
            "connection_init_wait_timeout",
            timedelta(seconds=settings.live_connection_init_timeout_seconds),
        )
        options.setdefault(
            "max_subscriptions_per_connection", settings.live_max_subscriptions_per_connection
        )
        super().__init__(schema, **options)
        self.settings = settings
        # APQ and trusted documents (web/persisted_queries.py); made at the first request,
        # when the runtime's Redis client exists.
        self.persisted: PersistedQueries | None = None
        self.trusted = trusted

    async def run(
        self,
        request: Request | WebSocket,
        context: RequestContext | UnsetType = UNSET,
        root_value: UnsetType | None = UNSET,
    ) -> Any:
        if self.persisted is None:
            runtime = request.app.state.runtime
            self.persisted = persisted_queries.for_settings(
                self.settings,
                getattr(runtime, "redis", None),
                self.trusted,
                getattr(runtime, "rate_limits", None),
            )
        try:
            return await super().run(request, context, root_value)  # type: ignore[arg-type]
        except PersistedQueryError as error:
            return error.response()

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET that names its document by hash (APQ) is an operation, not a visit to GraphiQL.
        return bool(
            super().should_render_graphql_ide(request) and "extensions" not in request.query_params
        )

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Strawberry's parsing, then the persisted-document lookup: a request may name its
        document by hash (APQ), and in trusted-documents mode must name a registered one."""
        data = await super().parse_http_body(request)
        assert self.persisted is not None, "run() sets it"
        client = getattr(request, "client_host", None)
        return await self.persisted.resolve(data, client if isinstance(client, str) else "unknown")

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        if _unavailable_only(response_data):
            # Nothing was done because PostgreSQL or Redis is out of reach: 503 lets load
            # balancers and clients' retry policies see it; Retry-After says when to come back.
            response.status_code = 503
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> RequestContext:
        request_id = request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex
        token = bearer_token(request.headers.get("authorization"))
        runtime = request.app.state.runtime
        context = await build_context(
            request,
            response,
            self.settings,
            request_id,
            token,
            runtime.jobs,
            runtime.events,
            runtime.rate_limits,
        )
        context.live = getattr(request.app.state, "live", None)
        context.writer = runtime.writer
        return context

    async def on_ws_connect(self, context: RequestContext) -> UnsetType | dict[str, object] | None:
        """Authenticate the WebSocket and open its live connection (raises LiveRefused)."""
        token = _payload_token(context.connection_params) or bearer_token(
            context.request.headers.get("authorization")
        )
        if token is None:
            raise unauthenticated(
                "Send an access token: connection_init payload "
                '{"authorization": "Bearer <token>"} or the Authorization header.',
                token_sent=False,
            )
        live = context.live
        if live is None or live.draining:
            raise restarting()
        try:
            credentials = await authenticate(self.settings, token)
        except DomainError as error:
            raise unauthenticated(error.message, token_sent=True) from None
        context.live_connection = live.open_connection(
            credentials, "websocket", bounded_lifetime=False
        )
        context.viewer = credentials.viewer
        context.auth_error = None
        context.loaders = Loaders(credentials.viewer.id)
        return UNSET
