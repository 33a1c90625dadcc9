"""How far a replica is behind the primary, in seconds, from WAL positions alone.

At each check the primary's WAL insert position is noted with the time. A replica's lag is the
age of the oldest noted position it has not replayed yet (0 when it has replayed them all).
So an idle primary does not make an idle replica look behind (`now() -
pg_last_xact_replay_timestamp()` grows without writes), and a replica whose WAL stream
stopped (receiver disconnected, replay paused) is seen falling behind as soon as the primary
writes anything, by at most one check interval late.
"""

from __future__ import annotations

import math
from collections import deque

# Positions kept per replica while it is behind (one per check); beyond, the oldest is kept
# (it is what the lag is measured from) and the next ones are dropped.
MAX_SAMPLES = 1024


def parse_lsn(text: str) -> int:
    """`16/B374D848` → a comparable integer."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


class LagTracker:
    """Until the replica has replayed the first position noted (when a web process starts, how
    far behind it was before is unknown), its lag is unknown: infinite."""

    def __init__(self) -> None:
        self._pending: deque[tuple[float, int]] = deque()
        self._caught_up = False

    def primary_at(self, now: float, lsn: int) -> None:
        """The primary's position seen at `now`."""
        if self._pending and self._pending[-1][1] >= lsn:
            return  # nothing new written: the older sample already stands for it
        if len(self._pending) >= MAX_SAMPLES:  # keep the oldest, drop the next
            oldest = self._pending.popleft()
            self._pending.popleft()
            self._pending.appendleft(oldest)
        self._pending.append((now, lsn))

    def replayed(self, now: float, lsn: int) -> float:
        """The replica has replayed up to `lsn`: its lag in seconds at `now`."""
        while self._pending and self._pending[0][1] <= lsn:
            self._pending.popleft()
            self._caught_up = True
        if not self._caught_up:
            return math.inf
        return now - self._pending[0][0] if self._pending else 0.0
