"""Garbage collection of sync bookkeeping, past the tombstone horizon (a setting).

- Tombstones (`DEL` entries) older than the horizon: `services.scopes.collect_tombstones`; their
  scopes remember the newest version deleted, so older cookies reset those scopes.
- Stored mutation results older than the horizon, except each client's latest (the one at its
  `lastMutationId`). A client retries only mutations still in its queue, and drops them once a
  pull confirms them, so results are only needed while a client may still be retrying: the same
  horizon as its cookie. A retry of a pruned one is still `DUPLICATE` (never applied twice: the
  client's `lastMutationId` decides that), with `code: RESULT_PRUNED` in place of the first
  result's details. The latest result is always kept, so a client that lost the response of
  its last push gets it back however long it was away.

Run at most every `sync_gc_interval_seconds` per process, from pulls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from models import SyncMutationResult
from services import scopes
from settings import Settings

BATCH = 5000
_last_run = 0.0


@dataclass(frozen=True, slots=True)
class Collected:
    tombstones: int
    results: int


def horizon(settings: Settings) -> timedelta:
    return timedelta(days=settings.sync_tombstone_horizon_days)


async def maybe_collect(settings: Settings) -> Collected | None:
    """Collect when this process has not for `sync_gc_interval_seconds`."""
    global _last_run
    if _last_run and time.monotonic() - _last_run < settings.sync_gc_interval_seconds:
        return None
    _last_run = time.monotonic()
    return await collect(horizon(settings))


async def collect(horizon: timedelta, now: datetime | None = None) -> Collected:
    cutoff = (now or datetime.now(UTC)) - horizon
    tombstones = await scopes.collect_tombstones(horizon, now)
    return Collected(tombstones=tombstones, results=await prune_results(cutoff))


async def prune_results(cutoff: datetime) -> int:
    """Delete stored results created before `cutoff`, keeping each client's latest."""
    deleted, after = 0, 0
    while True:
        rows = (
            await SyncMutationResult.filter(id__gt=after, created_at__lt=cutoff)
            .order_by("id")
            .limit(BATCH)
            .values_list("id", "mutation_id", "client__last_mutation_id")
        )
        if not rows:
            return deleted
        after = int(str(rows[-1][0]))
        old = [ident for ident, mid, last in rows if int(str(mid)) < int(str(last))]
        if old:
            await SyncMutationResult.filter(id__in=old).delete()
            deleted += len(old)
        if len(rows) < BATCH:
            return deleted
