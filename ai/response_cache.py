"""Validated answers cached by (model, prompt, parameters), and identical in-flight calls shared.

Only answers that passed validation are cached, so a hit never needs checking again. The key
hashes everything that shapes the answer (endpoint, upstream model, messages, max_tokens,
temperature, response format, schema), never the user: two users asking the same thing share
an answer, and neither sees anything of the other.

`Coalescer` makes N concurrent identical calls one upstream call: the first caller starts it as
a task, everyone (the first included) awaits it through `asyncio.shield`, so one caller's
cancellation does not cancel the others'. When the last interested caller cancels, the task is
cancelled too (closing its HTTP connection) and awaited, so its `finally` blocks (budget
release, breaker lease) have run by the time the caller's cancellation completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from observability import metrics

T = TypeVar("T")


def cache_key(**parts: Any) -> str:
    """A stable digest of everything that determines an answer."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _looked_up(value: str | None) -> str | None:
    """Prometheus: a response-cache lookup and whether it hit."""
    metrics.CACHE_LOOKUPS.labels("response", "miss" if value is None else "hit").inc()
    return value


class ResponseCache(Protocol):
    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, value: str, ttl: float) -> None: ...


class MemoryCache:
    """An in-process LRU with per-entry expiry."""

    def __init__(
        self, max_entries: int = 1000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return _looked_up(None)
        expires, value = entry
        if expires <= self._clock():
            del self._entries[key]
            return _looked_up(None)
        self._entries.move_to_end(key)
        return _looked_up(value)

    async def set(self, key: str, value: str, ttl: float) -> None:
        if ttl <= 0:
            return
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class RedisCache:
    """The cache in Redis (SET with EX), shared by every process."""

    def __init__(self, redis: Any, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def get(self, key: str) -> str | None:
        value = await self._redis.get(f"{self._prefix}:cache:{key}")
        if value is None:
            return _looked_up(None)
        return _looked_up(value.decode() if isinstance(value, bytes) else str(value))

    async def set(self, key: str, value: str, ttl: float) -> None:
        if ttl > 0:
            await self._redis.set(f"{self._prefix}:cache:{key}", value, px=int(ttl * 1000))


@dataclass
class _Flight:
    task: asyncio.Task[Any]
    waiters: int = 0


class Coalescer:
    """Shares one in-flight task per key among concurrent callers (in this process)."""

    def __init__(self) -> None:
        self._flights: dict[str, _Flight] = {}

    def in_flight(self) -> int:
        return len(self._flights)

    def has(self, key: str) -> bool:
        """Whether a call for `key` is in flight (a `run` now would join it)."""
        return key in self._flights

    async def run(self, key: str, factory: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Await the shared result; the flag says whether this caller started the call."""
        flight = self._flights.get(key)
        started = flight is None
        metrics.CACHE_LOOKUPS.labels("coalescer", "miss" if started else "hit").inc()
        if flight is None:
            flight = _Flight(asyncio.ensure_future(factory()))
            self._flights[key] = flight
            flight.task.add_done_callback(partial(self._done, key, flight))
        flight.waiters += 1
        try:
            result: T = await asyncio.shield(flight.task)
            return result, started
        except asyncio.CancelledError:
            if flight.waiters == 1 and not flight.task.done():
                # The last caller left: stop the upstream call instead of paying for it.
                self._forget(key, flight)
                flight.task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait({flight.task})
            raise
        finally:
            flight.waiters -= 1

    def _forget(self, key: str, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _done(self, key: str, flight: _Flight, task: asyncio.Task[Any]) -> None:
        self._forget(key, flight)
        # Mark the exception retrieved: if every waiter left, nobody else will look at it.
        if not task.cancelled():
            task.exception()
