"""Strawberry's ASGI view with our per-request context (viewer, loaders, request id)."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from resolvers.context import RequestContext, bearer_token, build_context
from settings import Settings


class CoursegenGraphQL(GraphQL[RequestContext, None]):
    def __init__(self, schema: Any, settings: Settings, **options: Any) -> None:
        super().__init__(schema, **options)
        self.settings = settings

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> RequestContext:
        request_id = request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex
        token = bearer_token(request.headers.get("authorization"))
        runtime = request.app.state.runtime
        return await build_context(
            request,
            response,
            self.settings,
            request_id,
            token,
            runtime.jobs,
            runtime.events,
            runtime.rate_limits,
        )
