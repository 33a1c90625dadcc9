"""The per-request context: settings, the viewer, loaders and the request id."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from ai.writer import CourseWriter
from generation.jobs import JobQueue
from resolvers.loaders import Loaders
from services import accounts
from services.accounts import Viewer
from services.errors import DomainError, ErrorCode
from services.rate_limits import RateLimits
from settings import Settings
from subscriptions.connections import LiveConnection
from subscriptions.live import LiveProgress
from subscriptions.progress_log import ProgressLog

log = logging.getLogger("coursegen.auth")


@dataclass
class RequestContext:
    request: Request | WebSocket
    response: Response | WebSocket | None
    settings: Settings
    request_id: str
    jobs: JobQueue
    events: ProgressLog
    rate_limits: RateLimits
    # The course writer, whose budgets a request for a new course is checked against.
    writer: CourseWriter | None = None
    viewer: Viewer | None = None
    # Why a presented token was refused; None when no token was sent.
    auth_error: DomainError | None = None
    loaders: Loaders = field(init=False)
    # Live progress (set by the transports that stream: WebSocket, graphql-sse).
    live: LiveProgress | None = None
    live_connection: LiveConnection | None = None
    # The WebSocket `connection_init` payload (Strawberry sets it).
    connection_params: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.viewer.id if self.viewer else None)

    def require_viewer(self) -> Viewer:
        if self.viewer is not None:
            return self.viewer
        if self.auth_error is not None:
            raise self.auth_error
        raise DomainError(ErrorCode.UNAUTHENTICATED, "Log in to do this.")


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def build_context(
    request: Request | WebSocket,
    response: Response | WebSocket | None,
    settings: Settings,
    request_id: str,
    token: str | None,
    jobs: JobQueue,
    events: ProgressLog,
    rate_limits: RateLimits,
) -> RequestContext:
    viewer: Viewer | None = None
    auth_error: DomainError | None = None
    if token:
        try:
            viewer = await accounts.viewer_from_access_token(settings, token)
        except DomainError as error:
            auth_error = error
            log.info("token refused: %s", error.message, extra={"request_id": request_id})
    return RequestContext(
        request=request,
        response=response,
        settings=settings,
        request_id=request_id,
        jobs=jobs,
        events=events,
        rate_limits=rate_limits,
        viewer=viewer,
        auth_error=auth_error,
    )
