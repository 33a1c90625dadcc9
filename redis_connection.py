"""The one way this project opens a Redis connection: retries and health checks on, and a
bounded number of connections (commands wait for a free one instead of opening thousands of
them when thousands of subscribers arrive at once).

REDIS_URL is either one server, `redis://host:port/db` (`rediss://` for TLS), or a Redis
Cluster, `redis+cluster://host:port[,host:port...]/` (`rediss+cluster://` for TLS): the listed
nodes are where the client starts discovering the cluster (any one reachable node is enough;
list several so a start-up does not depend on one), user and password as in `redis://`. A
cluster has no database numbers: the path is empty or `/0`. The `+cluster` form is the one the
`limits` library uses for its cluster storage, which the rate limits are built on.

Pub/sub needs no cluster client: classic PUBLISH is delivered to subscribers on every node of
a cluster, so a subscriber holds a plain connection to one node (`connect_subscriber`), and a
new connection after a failure goes to the next node, so a dead node is left behind.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ClusterDownError, RedisClusterUnreachableError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Either client: the code above this module uses only commands both have.
RedisClient = redis.Redis | RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

# What a cluster raises while slots have no reachable owner (a node down, a failover under
# way): an outage like a refused connection, not a bug.
CLUSTER_OUTAGE: tuple[type[Exception], ...] = (
    ClusterDownError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
)

_CONNECT_TIMEOUT = 5
_HEALTH_CHECK_SECONDS = 15
_POOL_WAIT_SECONDS = 20


def _retry(retries: int) -> Retry:
    return Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=retries)


@dataclass(frozen=True)
class ClusterAddress:
    """A parsed cluster URL: the startup nodes and the connection options they share."""

    nodes: list[tuple[str, int]]
    # redis-py's connection keyword arguments (user, password, query options, and
    # `connection_class` for TLS), as `redis://` URLs give them.
    connection: dict[str, Any]

    @property
    def cluster_options(self) -> dict[str, Any]:
        """The same for RedisCluster, which takes `ssl=True` instead of a connection class."""
        options = dict(self.connection)
        if options.pop("connection_class", None) is redis.SSLConnection:
            options["ssl"] = True
        return options


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterAddress:
    """`redis+cluster://[user:password@]host:port[,host:port...][/0][?option=value]`."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"not a Redis Cluster URL: {parts.scheme}://...")
    credentials, _, hosts = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        node = urlsplit(f"//{item.strip()}")
        if not node.hostname:
            raise ValueError(f"a Redis Cluster URL needs host:port for every node: {item!r}")
        nodes.append((node.hostname, node.port or 6379))
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has no database numbers: end the URL with / or /0")
    # redis-py's own parser for the rest (unquoting, TLS, query options cast to their types).
    host, port = nodes[0]
    single = f"{scheme}://{credentials + '@' if credentials else ''}{host}:{port}/0"
    if parts.query:
        single += f"?{parts.query}"
    options: dict[str, Any] = dict(parse_url(single))
    for key in ("host", "port", "db", "path"):
        options.pop(key, None)
    return ClusterAddress(nodes, options)


class BoundedRedisCluster(RedisCluster):
    """A cluster client whose commands wait for a turn when `limit` are in flight.

    redis-py's cluster client raises MaxConnectionsError at once when a node has no free
    connection; the plain client here waits on a BlockingConnectionPool. At most `limit`
    commands at a time (hence at most `limit` connections per node) gives the cluster the
    same behaviour under a burst of readers."""

    def __init__(self, *, limit: int, **kwargs: Any) -> None:
        # A few connections beyond `limit` for the client's own topology refreshes.
        kwargs["max_connections"] = limit + 4
        super().__init__(**kwargs)
        self._turns = asyncio.Semaphore(limit)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        # redis-py re-enters execute_command for some retried multi-slot commands: a nested
        # call already holds a turn (waiting for a second one could wait forever).
        if _holding_turn.get():
            return await super().execute_command(*args, **kwargs)
        try:
            async with asyncio.timeout(_POOL_WAIT_SECONDS):
                await self._turns.acquire()
        except TimeoutError:
            # What the plain client's BlockingConnectionPool raises after the same wait.
            raise RedisConnectionError("No connection available.") from None
        token = _holding_turn.set(True)
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            _holding_turn.reset(token)
            self._turns.release()


_holding_turn: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "coursegen_redis_turn", default=False
)


def connect_redis(url: str, *, retries: int = 5, max_connections: int = 64) -> RedisClient:
    """A client for `url` (a `redis.asyncio.Redis`, or a `RedisCluster` for a cluster URL).
    `retries=0` for connections whose owner handles reconnection itself (the broker's pub/sub
    connection must see every disconnect to resynchronize)."""
    if is_cluster_url(url):
        address = parse_cluster_url(url)
        return BoundedRedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            limit=max_connections,
            health_check_interval=_HEALTH_CHECK_SECONDS,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            # The cluster client retries on these after refreshing its slot map (a failover).
            retry=_retry(retries),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            **address.cluster_options,
        )
    return redis.Redis.from_pool(
        redis.BlockingConnectionPool.from_url(url, **_pool_options(retries, max_connections))
    )


def _pool_options(retries: int, max_connections: int) -> dict[str, Any]:
    return {
        "max_connections": max_connections,
        "timeout": _POOL_WAIT_SECONDS,
        "health_check_interval": _HEALTH_CHECK_SECONDS,
        "socket_connect_timeout": _CONNECT_TIMEOUT,
        "retry": _retry(retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


class NodeRotation:
    """Pub/sub connections to a cluster, one node at a time: each `pubsub()` goes to the next
    listed node. Its owners open a new one only at start and after a failure, so after a node
    died the next attempt is on another node (a message published anywhere reaches it)."""

    def __init__(self, address: ClusterAddress) -> None:
        # No silent retries (as for one server's subscriber): every disconnect reaches the owner.
        self._clients = [
            (
                f"{host}:{port}",
                redis.Redis.from_pool(
                    redis.BlockingConnectionPool(
                        host=host, port=port, **address.connection, **_pool_options(0, 4)
                    )
                ),
            )
            for host, port in address.nodes
        ]
        self._next = 0
        self.node: str | None = None  # the node of the latest connection, "host:port"

    def pubsub(self) -> Any:
        self.node, client = self._clients[self._next % len(self._clients)]
        self._next += 1
        return client.pubsub()

    async def aclose(self) -> None:
        for _, client in self._clients:
            await client.aclose()


def connect_subscriber(url: str) -> Any:
    """What pub/sub listeners open their connections from (`.pubsub()`, `.aclose()`): on one
    server a plain client without silent retries, on a cluster a `NodeRotation`."""
    if is_cluster_url(url):
        return NodeRotation(parse_cluster_url(url))
    return connect_redis(url, retries=0)
