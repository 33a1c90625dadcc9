"""Rate limits by user and action, with the `limits` library: in-process or in Redis.

A refusal is RATE_LIMITED with the seconds until the window lets the next request through.
`hit` counts one request (moving window). `charge` takes a weight, the cost of a GraphQL
operation (a sliding-window counter: one counter per window, whatever the weight). When Redis
is unreachable `charge` and `hit_or_local` fall back to an in-process limiter (per process,
so a little more generous) instead of refusing: reads and log-ins keep working.
"""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

import keyspace
from redis_connection import is_cluster_url, parse_cluster_url
from services.availability import is_unavailable, unavailable
from services.errors import DomainError, ErrorCode

log = logging.getLogger("coursegen.rate_limits")


class RateLimits:
    def __init__(self, redis_url: str | None = None) -> None:
        storage: Storage = _storage(redis_url) if redis_url else MemoryStorage()
        self.shared = redis_url is not None
        self._limiter = MovingWindowRateLimiter(storage)
        self._weighted = SlidingWindowCounterRateLimiter(storage)
        local = MemoryStorage()
        self._local = MovingWindowRateLimiter(local)
        self._local_weighted = SlidingWindowCounterRateLimiter(local)

    async def hit(self, action: str, rate: str, *identifiers: str) -> None:
        """Count one request; RATE_LIMITED if `rate` (e.g. "10/hour") is used up."""
        item = parse(rate)
        try:
            allowed = await self._limiter.hit(item, action, *identifiers)
            if allowed:
                return
            stats = await self._limiter.get_window_stats(item, action, *identifiers)
        except Exception as error:
            # Fails closed: what `hit` guards needs the shared store anyway (the job queue).
            if not is_unavailable(error):
                raise
            raise unavailable(
                "This action is temporarily unavailable; try again in a moment."
            ) from error
        raise _limited(rate, stats.reset_time)

    async def hit_or_local(self, action: str, rate: str, *identifiers: str) -> None:
        """`hit`, but counted in this process while the shared store is unreachable."""
        item = parse(rate)
        limiter = self._limiter
        try:
            allowed = await limiter.hit(item, action, *identifiers)
        except Exception as error:
            if not is_unavailable(error):
                raise
            _warn_unreachable(error)
            limiter = self._local
            allowed = await limiter.hit(item, action, *identifiers)
        if allowed:
            return
        stats = await limiter.get_window_stats(item, action, *identifiers)
        raise _limited(rate, stats.reset_time)

    async def charge(self, action: str, rate: str, cost: int, *identifiers: str) -> int:
        """Charge `cost` against the budget `rate`; returns what remains in the window, or
        raises RATE_LIMITED (nothing charged) when the cost does not fit."""
        item = parse(rate)
        limiter = self._weighted
        try:
            allowed = await limiter.hit(item, action, *identifiers, cost=cost)
            stats = await limiter.get_window_stats(item, action, *identifiers)
        except Exception as error:
            if not is_unavailable(error):
                raise
            _warn_unreachable(error)
            limiter = self._local_weighted
            allowed = await limiter.hit(item, action, *identifiers, cost=cost)
            stats = await limiter.get_window_stats(item, action, *identifiers)
        if allowed:
            return int(stats.remaining)
        if cost > item.amount:
            raise DomainError(
                ErrorCode.RATE_LIMITED,
                f"This request costs {cost}, more than the whole budget "
                f"({rate.replace('/', ' per ')}).",
                retry_after=item.get_expiry(),
            )
        raise _limited(rate, stats.reset_time, budget=True)


def _storage(redis_url: str) -> Storage:
    prefix = keyspace.key("limits")
    if is_cluster_url(redis_url):
        # limits' own cluster storage (`async+redis+cluster://host:port,...`); it reads only the
        # nodes and credentials from its URI, so TLS and query options go in as options. Its
        # sliding-window keys share a hash tag, so each counter pair stays in one slot.
        address = parse_cluster_url(redis_url)
        nodes = ",".join(f"{host}:{port}" for host, port in address.nodes)
        return RedisClusterStorage(
            f"async+redis+cluster://{nodes}",
            implementation="redispy",
            key_prefix=prefix,
            **address.cluster_options,
        )
    uri = redis_url if redis_url.startswith("async+") else "async+" + redis_url
    return RedisStorage(uri, implementation="redispy", key_prefix=prefix)


_WARN_EVERY_SECONDS = 10.0
_warned_at = -_WARN_EVERY_SECONDS


def _warn_unreachable(error: BaseException) -> None:
    """One line per 10 s, not two per request, while Redis is away."""
    global _warned_at
    now = time.monotonic()
    if now - _warned_at >= _WARN_EVERY_SECONDS:
        _warned_at = now
        log.warning("rate limits: shared store unreachable (%r); counting in-process", error)


def _limited(rate: str, reset_time: float, *, budget: bool = False) -> DomainError:
    retry_after = max(1, math.ceil(reset_time - time.time()))
    what = "Query cost budget spent" if budget else "Too many requests"
    return DomainError(
        ErrorCode.RATE_LIMITED,
        f"{what} ({rate.replace('/', ' per ')}); try again in {retry_after} s.",
        retry_after=retry_after,
    )
