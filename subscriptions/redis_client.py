"""The one way this project opens a Redis connection: retries and health checks on, and a
bounded pool (commands wait for a free connection instead of opening thousands of them when
thousands of subscribers arrive at once)."""

from __future__ import annotations

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def connect_redis(url: str, *, retries: int = 5, max_connections: int = 64) -> redis.Redis:
    """A client for `url`. `retries=0` for connections whose owner handles reconnection
    itself (the broker's pub/sub connection must see every disconnect to resynchronize)."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=20,
        health_check_interval=15,
        socket_connect_timeout=5,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return redis.Redis.from_pool(pool)
