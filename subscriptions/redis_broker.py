"""The production broker: ONE Redis pub/sub connection per process, fanned out locally.

A single task owns the pub/sub connection. It subscribes to the channels local listeners want
(a job's wake channel while that job has followers here, generic channels while they have
subscribers), unsubscribes from the ones nobody wants any more, and dispatches messages to the
listeners. When the connection breaks (Redis restarted, network cut), it reconnects with
backoff, subscribes to every wanted channel again and, as each subscription is confirmed,
gives its listeners a resync: anything published meanwhile was lost (pub/sub is at-most-once),
so they re-read the stream they guard. Event logs live in Redis Streams; nothing is lost there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

import keyspace
from redis_connection import connect_redis, connect_subscriber
from subscriptions.broker import (
    BrokerMessage,
    BrokerSubscription,
    Listener,
    LocalListeners,
    Unlisten,
    generic_channel,
    renamed,
)
from subscriptions.redis_progress_log import wake_channel

log = logging.getLogger("coursegen.live")


def control_channel() -> str:
    return keyspace.key("broker", "control")


_CHUNK = 500


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBroker:
    def __init__(self, url: str, *, poll_seconds: float = 0.05) -> None:
        self._publisher: Any = connect_redis(url)
        # No silent retries on the pub/sub connection: every disconnect must reach `_run`. On a
        # cluster each reconnection goes to the next listed node (redis_connection.NodeRotation).
        self._subscriber: Any = connect_subscriber(url)
        self._listeners = LocalListeners()
        self._requested: set[str] = set()
        self._poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connected = asyncio.Event()
        self.connections = 0  # how many times the pub/sub connection was (re)established

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-broker")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), timeout=5)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._publisher.aclose()
        await self._subscriber.aclose()

    @property
    def available(self) -> bool:
        # Cleared as soon as the pub/sub connection breaks, set again once resubscribed.
        return self.connected.is_set()

    async def publish(self, channel: str, data: str) -> None:
        if not self.available:
            # Redis is out of reach: fail now rather than retry for seconds inside a request
            # (a write that pokes its readers); pub/sub is at-most-once anyway.
            raise RedisConnectionError("the broker's Redis connection is down")
        await self._publisher.publish(generic_channel(channel), data)

    def listen(self, channel: str, listener: Listener) -> Unlisten:
        return self._listen(generic_channel(channel), renamed(channel, listener))

    def subscribe(self, channel: str, *, max_pending: int = 100) -> BrokerSubscription:
        return BrokerSubscription(self, channel, max_pending)

    def watch_job(self, job_id: uuid.UUID, wake: Callable[[], None]) -> Unlisten:
        return self._listen(wake_channel(job_id), lambda _message: wake())

    def _listen(self, channel: str, listener: Listener) -> Unlisten:
        _, remove = self._listeners.add(channel, listener)
        return remove

    @property
    def channels(self) -> int:
        return len(self._requested)

    async def _run(self) -> None:
        delay = 0.05
        while not self._closing:
            pubsub = self._subscriber.pubsub()
            self._requested = set()
            try:
                await pubsub.subscribe(control_channel())
                while not self._closing:
                    await self._sync(pubsub)
                    message = await pubsub.get_message(timeout=self._poll_seconds)
                    if message is not None:
                        self._on_message(message)
                        delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not self._closing:
                    log.warning("broker: Redis pub/sub connection lost (%s); reconnecting", error)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            if not self._closing:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _sync(self, pubsub: Any) -> None:
        wanted = self._listeners.by_channel.keys()
        added = [channel for channel in wanted if channel not in self._requested]
        removed = [
            channel
            for channel in self._requested
            if channel not in self._listeners.by_channel and channel != control_channel()
        ]
        for start in range(0, len(added), _CHUNK):
            chunk = added[start : start + _CHUNK]
            await pubsub.subscribe(*chunk)
            self._requested.update(chunk)
        for start in range(0, len(removed), _CHUNK):
            chunk = removed[start : start + _CHUNK]
            await pubsub.unsubscribe(*chunk)
            self._requested.difference_update(chunk)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = _text(message["type"])
        channel = _text(message["channel"])
        if kind == "message":
            self._listeners.dispatch(BrokerMessage(channel, _text(message["data"])))
        elif kind == "subscribe":
            if channel == control_channel():
                self.connections += 1
                self.connected.set()
            else:
                # Confirmed (first time, or again after a reconnect): catch up on what passed.
                self._listeners.dispatch(BrokerMessage(channel, None))


class RedisPublisher:
    """Publish-only side of the broker, for processes with no subscribers (the worker)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def publish(self, channel: str, data: str) -> None:
        await self._client.publish(generic_channel(channel), data)
