"""Live connections: who holds them, their limits, and why the server closes them.

Every transport (a WebSocket, a graphql-sse event stream, a plain SSE stream) opens one
`LiveConnection` for its authenticated user and closes it when it ends. The registry of this
process enforces the limits (each a setting) and closes connections for a reason the client is
told: the token expired, the session ended, the client reads too slowly, the stream reached its
maximum lifetime, or the server is restarting.

Limits are per process: connections per user (`live_max_connections_per_user`), subscriptions
per connection, and the send queue of a connection (events waiting to be written: a client that
lets more pile up is disconnected, so it never slows the broker or other subscribers).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models import AuthSession
from services.errors import DomainError, ErrorCode

if TYPE_CHECKING:
    from subscriptions.hub import Follower

log = logging.getLogger("coursegen.live")


@dataclass(frozen=True, slots=True)
class CloseReason:
    """Why the server ends a live connection; `code` is stable, `message` is for a person."""

    code: str
    ws_code: int  # the WebSocket close code (1012/1013 make graphql-ws clients reconnect)
    message: str  # also the WebSocket close reason: at most 123 bytes


TOKEN_EXPIRED = CloseReason(
    "token_expired", 4403, "The access token has expired; reconnect with a fresh token."
)
SESSION_ENDED = CloseReason("session_ended", 4403, "The session has ended; log in again.")
SLOW_CONSUMER = CloseReason(
    "slow_consumer", 1013, "Too many events waiting: the client reads too slowly. Reconnect."
)
LIFETIME = CloseReason(
    "lifetime", 1000, "The stream reached its maximum lifetime; reconnect to resume."
)
RESTARTING = CloseReason("restart", 1012, "The server is restarting; reconnect to resume.")


class LiveRefused(Exception):
    """A live connection that is not accepted; how each transport says so."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        ws_code: int,
        http_status: int,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ws_code = ws_code
        self.http_status = http_status
        self.retry_after = retry_after


def unauthenticated(message: str, *, token_sent: bool) -> LiveRefused:
    # 4401 tells graphql-ws clients not to retry (no credentials); 4403 lets them reconnect,
    # asking `connectionParams` again, which is how a client brings a refreshed token.
    return LiveRefused(
        "UNAUTHENTICATED", message, ws_code=4403 if token_sent else 4401, http_status=401
    )


def restarting() -> LiveRefused:
    return LiveRefused(
        "TEMPORARILY_UNAVAILABLE",
        RESTARTING.message,
        ws_code=RESTARTING.ws_code,
        http_status=503,
        retry_after=1,
    )


@dataclass(frozen=True, slots=True)
class LiveLimits:
    max_subscriptions_per_connection: int = 20
    max_connections_per_user: int = 20
    send_queue_size: int = 256
    sse_max_lifetime_seconds: float = 600.0
    session_check_seconds: float = 60.0


class LiveConnection:
    __slots__ = (
        "close_callbacks",
        "closed",
        "deadline",
        "deadline_reason",
        "followers",
        "id",
        "opened_at",
        "queued",
        "reason",
        "registry",
        "released",
        "session_id",
        "subscriptions",
        "transport",
        "user_id",
    )

    def __init__(
        self,
        registry: LiveRegistry,
        user_id: uuid.UUID,
        session_id: uuid.UUID | None,
        transport: str,
        deadline: float | None,
        deadline_reason: CloseReason,
    ) -> None:
        self.registry = registry
        self.id = uuid.uuid4().hex
        self.user_id = user_id
        self.session_id = session_id
        self.transport = transport
        self.deadline = deadline
        self.deadline_reason = deadline_reason
        self.opened_at = time.time()
        self.closed = asyncio.Event()
        self.reason: CloseReason | None = None
        self.followers: set[Follower] = set()
        self.close_callbacks: list[Callable[[], None]] = []
        self.queued = 0  # events taken from the broker and not yet handed to the transport
        self.subscriptions = 0
        self.released = False

    @property
    def queue_limit(self) -> int:
        return self.registry.limits.send_queue_size

    @property
    def is_closed(self) -> bool:
        return self.reason is not None

    def close(self, reason: CloseReason) -> None:
        """Ask the transport to close (it watches `closed`); followers stop at once."""
        if self.reason is not None:
            return
        self.reason = reason
        self.closed.set()
        self.registry.closed_by_reason[reason.code] += 1
        for follower in list(self.followers):
            follower.wake_up()
        for callback in self.close_callbacks:
            callback()
        if reason is not RESTARTING:
            log.info(
                "live connection closed: %s",
                reason.code,
                extra={"transport": self.transport, "user": str(self.user_id)},
            )

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call `callback()` (synchronously) when the connection is asked to close."""
        if self.reason is not None:
            callback()
        else:
            self.close_callbacks.append(callback)

    def acquire_subscription(self) -> None:
        limit = self.registry.limits.max_subscriptions_per_connection
        if self.subscriptions >= limit:
            raise DomainError(
                ErrorCode.RATE_LIMITED,
                f"Subscription limit reached: at most {limit} on one connection.",
                retry_after=1,
            )
        self.subscriptions += 1

    def release_subscription(self) -> None:
        self.subscriptions = max(0, self.subscriptions - 1)

    def release(self) -> None:
        """The transport is done with this connection: stop its followers, free its slot."""
        if self.released:
            return
        self.released = True
        for follower in list(self.followers):
            follower.close()
        self.registry.forget(self)


class LiveRegistry:
    """The live connections of this process; closes them at their deadline or on drain."""

    def __init__(self, limits: LiveLimits) -> None:
        self.limits = limits
        self.connections: dict[str, LiveConnection] = {}
        self.per_user: Counter[uuid.UUID] = Counter()
        self.closed_by_reason: Counter[str] = Counter()
        self.draining = False
        self._deadlines: list[tuple[float, int, LiveConnection]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="live-registry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def open(
        self,
        *,
        user_id: uuid.UUID,
        session_id: uuid.UUID | None,
        expires_at: float | None,
        transport: str,
        bounded_lifetime: bool,
    ) -> LiveConnection:
        if self.draining:
            raise restarting()
        limit = self.limits.max_connections_per_user
        if self.per_user[user_id] >= limit:
            raise LiveRefused(
                "TOO_MANY_CONNECTIONS",
                f"Too many live connections for this user (at most {limit}).",
                ws_code=1008,
                http_status=429,
                retry_after=5,
            )
        deadline, reason = expires_at, TOKEN_EXPIRED
        if bounded_lifetime:
            end_of_life = time.time() + self.limits.sse_max_lifetime_seconds
            if deadline is None or end_of_life < deadline:
                deadline, reason = end_of_life, LIFETIME
        connection = LiveConnection(self, user_id, session_id, transport, deadline, reason)
        self.connections[connection.id] = connection
        self.per_user[user_id] += 1
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, next(self._order), connection))
            self._changed.set()
        return connection

    def forget(self, connection: LiveConnection) -> None:
        if self.connections.pop(connection.id, None) is not None:
            self.per_user[connection.user_id] -= 1
            if self.per_user[connection.user_id] <= 0:
                del self.per_user[connection.user_id]

    def drain(self) -> None:
        """Refuse new connections and close every open one so clients reconnect elsewhere."""
        self.draining = True
        for connection in list(self.connections.values()):
            connection.close(RESTARTING)

    async def _watch(self) -> None:
        next_session_check = time.monotonic() + self.limits.session_check_seconds
        while True:
            now = time.time()
            while self._deadlines and self._deadlines[0][0] <= now:
                _, _, connection = heapq.heappop(self._deadlines)
                if not connection.released:
                    connection.close(connection.deadline_reason)
            if time.monotonic() >= next_session_check:
                next_session_check = time.monotonic() + self.limits.session_check_seconds
                try:
                    await self._close_ended_sessions()
                except Exception:  # the database may be down for a moment; try next time
                    log.warning("live: could not check sessions", exc_info=True)
            wait = next_session_check - time.monotonic()
            if self._deadlines:
                wait = min(wait, self._deadlines[0][0] - time.time())
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=max(wait, 0.01))

    async def _close_ended_sessions(self) -> None:
        """Connections whose session was logged out (or revoked) since they opened."""
        by_session: dict[uuid.UUID, list[LiveConnection]] = {}
        for connection in self.connections.values():
            if connection.session_id is not None and not connection.is_closed:
                by_session.setdefault(connection.session_id, []).append(connection)
        ids = list(by_session)
        for start in range(0, len(ids), 500):
            revoked = await AuthSession.filter(
                id__in=ids[start : start + 500], revoked_at__isnull=False
            ).values_list("id", flat=True)
            for session_id in revoked:
                for connection in by_session.get(uuid.UUID(str(session_id)), []):
                    connection.close(SESSION_ENDED)
