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
from services.availability import is_unavailable, unavailable
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


AUTHENTICATED_STATE_KEY = "authenticated"


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The outcome of checking one request's access token (kept in the ASGI scope's state, so
    a request handed from the fast path to the normal executor is checked once)."""

    token: str
    viewer: Viewer | None
    error: DomainError | None


async def authenticate(
    settings: Settings, token: str, request_id: str, state: dict[str, Any] | None
) -> Authenticated:
    known = state.get(AUTHENTICATED_STATE_KEY) if state is not None else None
    if isinstance(known, Authenticated) and known.token == token:
        return known
    viewer: Viewer | None = None
    auth_error: DomainError | None = None
    try:
        viewer = await accounts.viewer_from_access_token(settings, token)
    except DomainError as error:
        auth_error = error
        log.info("token refused: %s", error.message, extra={"request_id": request_id})
    except Exception as error:
        # The session could not be checked (database out of reach): whatever needs the
        # viewer answers TEMPORARILY_UNAVAILABLE instead of the request failing with a 500.
        if not is_unavailable(error):
            raise
        auth_error = unavailable()
        log.warning("session check failed: %s", error, extra={"request_id": request_id})
    authenticated = Authenticated(token=token, viewer=viewer, error=auth_error)
    if state is not None:
        state[AUTHENTICATED_STATE_KEY] = authenticated
    return authenticated


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
        state = request.scope.get("state")
        authenticated = await authenticate(
            settings, token, request_id, state if isinstance(state, dict) else None
        )
        viewer, auth_error = authenticated.viewer, authenticated.error
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
