"""Rate limits by user and action, with the `limits` library: in-process or in Redis.

A refusal is RATE_LIMITED with the seconds until the window lets the next request through.
"""

from __future__ import annotations

import math
import time

from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from services.errors import DomainError, ErrorCode


class RateLimits:
    def __init__(self, redis_url: str | None = None) -> None:
        storage: Storage
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            storage = RedisStorage(uri, implementation="redispy", key_prefix="coursegen:limits")
        else:
            storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, action: str, rate: str, *identifiers: str) -> None:
        """Count one request; RATE_LIMITED if `rate` (e.g. "10/hour") is used up."""
        item = parse(rate)
        try:
            allowed = await self._limiter.hit(item, action, *identifiers)
            if allowed:
                return
            stats = await self._limiter.get_window_stats(item, action, *identifiers)
        except (ConnectionError, TimeoutError, OSError) as error:
            raise DomainError(
                ErrorCode.TEMPORARILY_UNAVAILABLE,
                "This action is temporarily unavailable; try again in a moment.",
            ) from error
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise DomainError(
            ErrorCode.RATE_LIMITED,
            f"Too many requests ({rate.replace('/', ' per ')}); try again in {retry_after} s.",
            retry_after=retry_after,
        )
