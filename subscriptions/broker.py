"""The per-process broker: generic publish/subscribe, and wake-ups of the jobs' event logs.

One broker per process. In production it holds ONE Redis pub/sub connection and fans every
message out to local listeners (`subscriptions.redis_broker.RedisBroker`); embedded, it is a
dictionary of local listeners (`InProcessBroker`).

Pub/sub is at-most-once. It carries:
- wake-ups of job event logs: the log itself (a Redis Stream or an in-process ring) holds the
  events; a wake-up only tells local readers to read it again;
- generic pokes (`publish`/`subscribe`), e.g. `syncPoke` for clients that sync: a poke says
  "something changed, pull", never the change itself.

Whenever messages may have been missed (the broker reconnected to Redis, or a channel
subscription was just confirmed), listeners get a *resync* message (`data is None`): re-read
whatever the channel guards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import keyspace
from subscriptions.progress_log import InProcessProgressLog


def generic_channel(channel: str) -> str:
    """The Redis channel of a generic (non-progress) publish, under the deployment's namespace."""
    return keyspace.key("pubsub", channel)


@dataclass(frozen=True, slots=True)
class BrokerMessage:
    channel: str
    data: str | None  # None: a resync, something may have been missed

    @property
    def resync(self) -> bool:
        return self.data is None


Listener = Callable[[BrokerMessage], None]
Unlisten = Callable[[], None]


class Broker(Protocol):
    async def start(self) -> None: ...

    @property
    def available(self) -> bool:
        """Whether messages flow now (False while Redis is out of reach)."""

    async def close(self) -> None: ...

    async def publish(self, channel: str, data: str) -> None:
        """Send `data` to every subscriber of `channel`, in every process."""

    def listen(self, channel: str, listener: Listener) -> Unlisten:
        """Call `listener` (synchronously, never blocking) for each message of `channel`."""

    def subscribe(self, channel: str, *, max_pending: int = 100) -> BrokerSubscription:
        """The messages of `channel` as an async iterator; close it when done."""

    def watch_job(self, job_id: uuid.UUID, wake: Callable[[], None]) -> Unlisten:
        """Call `wake()` whenever the job's event log may have grown."""


class BrokerSubscription:
    """Messages of one channel for one consumer, bounded: when the consumer falls more than
    `max_pending` behind, what waits is replaced by a single resync message."""

    def __init__(self, broker: Broker, channel: str, max_pending: int) -> None:
        self.channel = channel
        self._pending: deque[BrokerMessage] = deque()
        self._max = max_pending
        self._ready = asyncio.Event()
        self._closed = False
        self._unlisten = broker.listen(channel, self._offer)

    def _offer(self, message: BrokerMessage) -> None:
        if len(self._pending) >= self._max:
            self._pending.clear()
            message = BrokerMessage(self.channel, None)
        self._pending.append(message)
        self._ready.set()

    def __aiter__(self) -> BrokerSubscription:
        return self

    async def __anext__(self) -> BrokerMessage:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._pending.popleft()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._unlisten()
            self._ready.set()

    async def __aenter__(self) -> BrokerSubscription:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class LocalListeners:
    """Channel → listeners, shared by both brokers."""

    def __init__(self) -> None:
        self.by_channel: dict[str, set[Listener]] = {}

    def add(self, channel: str, listener: Listener) -> tuple[bool, Unlisten]:
        """Returns whether the channel is new, and the function that removes the listener."""
        listeners = self.by_channel.get(channel)
        new = listeners is None
        if listeners is None:
            listeners = self.by_channel[channel] = set()
        listeners.add(listener)

        def remove() -> None:
            current = self.by_channel.get(channel)
            if current is None:
                return
            current.discard(listener)
            if not current:
                del self.by_channel[channel]

        return new, remove

    def dispatch(self, message: BrokerMessage) -> None:
        for listener in list(self.by_channel.get(message.channel, ())):
            listener(message)

    def resync_all(self) -> None:
        for channel in list(self.by_channel):
            self.dispatch(BrokerMessage(channel, None))


def renamed(channel: str, listener: Listener) -> Listener:
    """The listener, called with messages named by the caller's channel (no prefix)."""

    def call(message: BrokerMessage) -> None:
        listener(BrokerMessage(channel, message.data))

    return call


class InProcessBroker:
    """The embedded broker: listeners in this process; job wake-ups from the in-process log."""

    def __init__(self, log: InProcessProgressLog) -> None:
        self.log = log
        self._listeners = LocalListeners()

    async def start(self) -> None:
        return None

    @property
    def available(self) -> bool:
        return True

    async def close(self) -> None:
        self._listeners.by_channel.clear()

    async def publish(self, channel: str, data: str) -> None:
        self._listeners.dispatch(BrokerMessage(generic_channel(channel), data))

    def listen(self, channel: str, listener: Listener) -> Unlisten:
        _, remove = self._listeners.add(generic_channel(channel), renamed(channel, listener))
        return remove

    def subscribe(self, channel: str, *, max_pending: int = 100) -> BrokerSubscription:
        return BrokerSubscription(self, channel, max_pending)

    def watch_job(self, job_id: uuid.UUID, wake: Callable[[], None]) -> Unlisten:
        return self.log.watch(job_id, wake)
