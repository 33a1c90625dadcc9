"""Everything live in one web process: broker, progress hub and the registry of connections.

`LiveProgress` is built once by the app's lifespan (`app.state.live`) and used by every
transport: the GraphQL subscription `generationProgress` (over WebSocket and graphql-sse) and
the plain SSE stream `GET /events/jobs/{jobId}`. Other features publish and subscribe through
`live.broker` (generic channels, e.g. `syncPoke`).
"""

from __future__ import annotations

import uuid

from services.accounts import Viewer
from services.availability import unavailable
from services.errors import DomainError, ErrorCode, invalid
from settings import Settings
from subscriptions.auth import Credentials, followable_job
from subscriptions.broker import Broker, InProcessBroker
from subscriptions.connections import RESTARTING, LiveConnection, LiveLimits, LiveRegistry
from subscriptions.hub import Follower, ProgressHub
from subscriptions.progress_log import InProcessProgressLog, ReadableLog
from subscriptions.redis_broker import RedisBroker
from subscriptions.redis_progress_log import RedisProgressLog


class LiveProgress:
    def __init__(self, settings: Settings, log: ReadableLog, broker: Broker) -> None:
        self.settings = settings
        self.broker = broker
        self.hub = ProgressHub(log, broker, poll_seconds=settings.live_log_poll_seconds)
        self.registry = LiveRegistry(
            LiveLimits(
                max_subscriptions_per_connection=settings.live_max_subscriptions_per_connection,
                max_connections_per_user=settings.live_max_connections_per_user,
                send_queue_size=settings.live_send_queue_size,
                sse_max_lifetime_seconds=settings.live_sse_max_lifetime_seconds,
                session_check_seconds=settings.live_session_check_seconds,
            )
        )

    @classmethod
    def build(cls, settings: Settings, events: object) -> LiveProgress:
        """Redis pub/sub when REDIS_URL is set; otherwise in-process (with its in-process log).
        `events` is the runtime's event log (either log of `subscriptions`)."""
        if not isinstance(events, InProcessProgressLog | RedisProgressLog):
            raise TypeError(f"no live progress for an event log of type {type(events)}")
        log: ReadableLog = events
        if settings.redis_url:
            return cls(settings, log, RedisBroker(settings.redis_url))
        if not isinstance(log, InProcessProgressLog):
            raise TypeError("without Redis, live progress needs the in-process event log")
        return cls(settings, log, InProcessBroker(log))

    async def start(self) -> None:
        await self.broker.start()
        await self.registry.start()

    async def stop(self) -> None:
        self.registry.drain()
        await self.hub.close()
        await self.registry.stop()
        await self.broker.close()

    @property
    def draining(self) -> bool:
        return self.registry.draining

    def drain(self) -> None:
        """Refuse new live connections and subscriptions; close the open ones (clients
        reconnect to another process and resume)."""
        self.registry.drain()

    def open_connection(
        self, credentials: Credentials, transport: str, *, bounded_lifetime: bool
    ) -> LiveConnection:
        """Raises LiveRefused (draining, too many connections for the user)."""
        viewer = credentials.viewer
        return self.registry.open(
            user_id=viewer.id,
            session_id=viewer.session_id,
            expires_at=credentials.expires_at,
            transport=transport,
            bounded_lifetime=bounded_lifetime,
        )

    async def follow(
        self, viewer: Viewer, job_id: uuid.UUID, after: int | None, connection: LiveConnection
    ) -> Follower:
        """The events of a job the viewer may see, after `after`, until its terminal event."""
        if after is not None and after < 0:
            raise invalid("after: a sequence number, 0 or more.", field="after")
        if self.registry.draining or connection.is_closed:
            raise DomainError(ErrorCode.TEMPORARILY_UNAVAILABLE, RESTARTING.message)
        if not self.broker.available:
            # Redis is out of reach: a new follower would wait in silence until it is back.
            # Followers already attached keep waiting and resume without losing an event.
            raise unavailable("Live progress is temporarily unavailable; try again shortly.")
        await followable_job(viewer.id, job_id)
        connection.acquire_subscription()
        return self.hub.follower(
            job_id, after or 0, connection, on_close=connection.release_subscription
        )
