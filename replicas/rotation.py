"""The replicas of one web process and which of them are in rotation.

A background task checks every replica each `database_replica_check_seconds`: it must answer
(within a bound), still be a replica (`pg_is_in_recovery()`: a promoted one has left the
primary's timeline) and be at most `database_replica_max_lag_seconds` behind (replicas/lag.py).
A replica that fails any of these is out of rotation until a later check finds it well again;
a connection to it that cannot be had takes it out at once (replicas/client.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tortoise.backends.base.client import BaseDBAsyncClient

from observability import metrics
from replicas.client import ReplicaClient
from replicas.lag import LagTracker, parse_lsn

log = logging.getLogger("coursegen.replicas")

# A check that takes longer than this counts as the replica being unreachable.
CHECK_TIMEOUT_SECONDS = 2.0


@dataclass
class Replica:
    name: str  # host:port, for logs and metric labels (never the credentials)
    client: ReplicaClient
    in_rotation: bool = False
    replay_lsn: int = 0
    lag_seconds: float = 0.0
    reason: str = "not checked yet"
    lag: LagTracker = field(default_factory=LagTracker)

    def take_out(self, reason: str) -> None:
        if self.in_rotation:
            log.warning("replica %s out of rotation: %s", self.name, reason)
        self.in_rotation, self.reason = False, reason
        metrics.DB_REPLICA_IN_ROTATION.labels(self.name).set(0)

    def put_in(self) -> None:
        if not self.in_rotation:
            log.info("replica %s in rotation", self.name)
        self.in_rotation, self.reason = True, "ok"
        metrics.DB_REPLICA_IN_ROTATION.labels(self.name).set(1)


def replica_name(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}"


class ReplicaSet:
    def __init__(
        self,
        primary: BaseDBAsyncClient,
        replicas: list[Replica],
        max_lag_seconds: float,
        check_seconds: float,
    ) -> None:
        self.primary = primary
        self.replicas = replicas
        self.max_lag_seconds = max_lag_seconds
        self.check_seconds = check_seconds
        self._task: asyncio.Task[None] | None = None

    # -- choosing -------------------------------------------------------------------------

    def pick(self, user_id: uuid.UUID | None, min_lsn: int) -> Replica | None:
        """A replica in rotation that has replayed `min_lsn`, or None (read the primary).
        A user keeps to one replica while it stays in rotation, so that one user's reads do
        not go back in time between two replicas at different positions."""
        ready = [r for r in self.replicas if r.in_rotation and r.replay_lsn >= min_lsn]
        if not ready:
            return None
        return ready[(user_id.int if user_id else 0) % len(ready)]

    # -- checking -------------------------------------------------------------------------

    async def start(self) -> None:
        """A first check before serving (bounded), then one every `check_seconds`."""
        await self.check()
        self._task = asyncio.create_task(self._keep_checking(), name="replica-checks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.gather(*(r.client.close() for r in self.replicas), return_exceptions=True)

    async def _keep_checking(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            try:
                await self.check()
            except Exception:  # a check must never end the loop
                log.exception("replica check failed")

    async def check(self) -> None:
        try:
            _, rows = await asyncio.wait_for(
                self.primary.execute_query("SELECT pg_current_wal_insert_lsn()::text AS lsn"),
                CHECK_TIMEOUT_SECONDS,
            )
            primary_lsn = parse_lsn(rows[0]["lsn"])
        except Exception as error:
            # Without the primary's position no lag can be told; replicas keep their state.
            log.warning("replica check: the primary's WAL position is unknown: %s", error)
            return
        now = time.monotonic()
        for replica in self.replicas:
            replica.lag.primary_at(now, primary_lsn)
        await asyncio.gather(*(self._check(r) for r in self.replicas))

    async def _check(self, replica: Replica) -> None:
        try:
            row = await asyncio.wait_for(_replay_position(replica.client), CHECK_TIMEOUT_SECONDS)
        except Exception as error:
            # Its noted positions are kept: back, it is in rotation once it has caught up.
            replica.take_out(f"unreachable ({type(error).__name__}: {error})")
            return
        recovering, replayed = row
        if not recovering or replayed is None:
            replica.take_out("not in recovery (promoted?)")
            return
        replica.replay_lsn = parse_lsn(replayed)
        replica.lag_seconds = replica.lag.replayed(time.monotonic(), replica.replay_lsn)
        metrics.DB_REPLICA_LAG.labels(replica.name).set(replica.lag_seconds)
        if replica.lag_seconds > self.max_lag_seconds:
            replica.take_out(f"{replica.lag_seconds:.1f} s behind the primary")
        else:
            replica.put_in()

    def unreachable(self, replica: Replica, error: BaseException) -> None:
        replica.take_out(f"a connection failed ({type(error).__name__}: {error})")


async def _replay_position(client: ReplicaClient) -> tuple[bool, str | None]:
    async with client.probe_connection() as connection:
        row = await connection.fetchrow(
            "SELECT pg_is_in_recovery() AS recovering, pg_last_wal_replay_lsn()::text AS lsn"
        )
    return bool(row["recovering"]), row["lsn"]
