"""Where a read goes, decided at one choke point: the connection named "default".

`async with reads(user_id):` around the reads of one request sets, for that request's task
only, a replica's client in place of the primary's "default" connection (Tortoise keeps its
connections in a context variable: the same mechanism `in_transaction()` uses). Everything
inside then reads from the replica: the ORM, dataloaders, `connections.get("default")`, the
fast path's pooled connection, `in_transaction()`. Outside, and in every other request, the
primary answers. Writes never run inside: a write there would fail on the replica (read-only
transaction), which keeps a misplaced `reads()` from going unnoticed.

Read-your-writes (docs/replicas.md): after a request of a user that wrote, `wrote(user_id)`
notes the primary's WAL insert position as the user's mark (replicas/marks.py); `reads()`
picks only a replica whose replayed position (from its last check) is at or past the mark,
else the primary.
"""

from __future__ import annotations

import functools
import logging
import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tortoise import connections

from models.db import connection_config
from observability import metrics
from redis_connection import RedisClient
from replicas.client import ReplicaClient
from replicas.lag import parse_lsn
from replicas.marks import WriteMarks
from replicas.rotation import Replica, ReplicaSet, replica_name
from settings import Settings

log = logging.getLogger("coursegen.replicas")


class _Routing:
    def __init__(self, replicas: ReplicaSet, marks: WriteMarks) -> None:
        self.replicas = replicas
        self.marks = marks


_routing: _Routing | None = None


def _client(settings: Settings, url: str) -> ReplicaClient:
    config = connection_config(settings, url)
    assert isinstance(config, dict), "replicas are PostgreSQL"
    params = dict(config["credentials"])
    params["connection_name"] = "default"  # it stands in for the primary (see above)
    return ReplicaClient(**params)


async def start(settings: Settings, redis_client: RedisClient | None) -> None:
    """Connects the replicas of DATABASE_REPLICA_URLS and starts checking them (web processes;
    after `models.db.connect`). Nothing when there are none."""
    global _routing
    urls = settings.replica_urls
    if not urls:
        return
    primary = connections.get("default")
    replicas = [Replica(replica_name(url), _client(settings, url)) for url in urls]
    replica_set = ReplicaSet(
        primary,
        replicas,
        settings.database_replica_max_lag_seconds,
        settings.database_replica_check_seconds,
    )
    for replica in replicas:
        replica.client.bind(primary, functools.partial(replica_set.unreachable, replica))
    # Marks outlive the time after which every replica in rotation has replayed them.
    ttl = (
        math.ceil(
            settings.database_replica_max_lag_seconds + 4 * settings.database_replica_check_seconds
        )
        + 10
    )
    _routing = _Routing(replica_set, WriteMarks(redis_client, ttl))
    await replica_set.start()


async def stop() -> None:
    global _routing
    if _routing is not None:
        routing, _routing = _routing, None
        await routing.replicas.stop()


def replica_set() -> ReplicaSet | None:
    return _routing.replicas if _routing else None


@asynccontextmanager
async def reads(user_id: uuid.UUID | None) -> AsyncIterator[None]:
    """The reads of the block go to a replica when one may serve this user."""
    routing = _routing
    if routing is None:
        yield
        return
    target = await _choose(routing, user_id)
    if target is None:
        yield
        return
    token = connections.set("default", target.client)
    try:
        yield
    finally:
        connections.reset(token)


async def _choose(routing: _Routing, user_id: uuid.UUID | None) -> Replica | None:
    if not any(r.in_rotation for r in routing.replicas.replicas):
        metrics.DB_READS.labels("primary_no_replica").inc()
        return None
    mark = 0
    if user_id is not None:
        try:
            mark = await routing.marks.get(user_id)
        except Exception as error:  # the marks cannot be read: the primary is always right
            log.warning("read-your-writes mark unreadable, reading the primary: %s", error)
            metrics.DB_READS.labels("primary_mark_unknown").inc()
            return None
    replica = routing.replicas.pick(user_id, mark)
    metrics.DB_READS.labels("replica" if replica else "primary_own_write").inc()
    return replica


async def wrote(user_id: uuid.UUID | None) -> None:
    """The user's request wrote (and committed): its next reads see it."""
    routing = _routing
    if routing is None or user_id is None:
        return
    try:
        _, rows = await routing.replicas.primary.execute_query(
            "SELECT pg_current_wal_insert_lsn()::text AS lsn"
        )
        await routing.marks.raise_to(user_id, parse_lsn(rows[0]["lsn"]))
    except Exception as error:
        # The write is done; only how soon its author sees it on a replica is at stake.
        log.warning("read-your-writes mark not recorded: %s", error)
