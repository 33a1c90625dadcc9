"""Read-your-writes marks: per user, the primary's WAL position after that user's last write.

A user's reads go to a replica only once it has replayed past the user's mark. Web processes
behind a load balancer must all see a mark, so with Redis it is kept there (one key per user,
raised, never lowered, by a script: two writes racing from two processes leave the higher
position); without Redis (one embedded web process) in a bounded in-process map. A mark
expires after `ttl` seconds: by then every replica in rotation has replayed it (a replica
further behind than the max lag is out of rotation), so an expired mark changes nothing.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict

import keyspace
from redis_connection import RedisClient

# Positions as 16 hex digits, so that Lua compares them as strings, exactly (Lua's numbers
# are doubles).
_RAISE = """
local current = redis.call('GET', KEYS[1])
if (not current) or ARGV[1] > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 1
"""

LOCAL_MARKS = 100_000


def _key(user_id: uuid.UUID) -> str:
    return keyspace.key("replica-marks", str(user_id))


class WriteMarks:
    def __init__(self, client: RedisClient | None, ttl: int) -> None:
        self.client = client
        self.ttl = ttl
        self._raise = client.register_script(_RAISE) if client is not None else None
        self._local: OrderedDict[uuid.UUID, tuple[float, int]] = OrderedDict()

    async def raise_to(self, user_id: uuid.UUID, lsn: int) -> None:
        if self._raise is not None:
            await self._raise(keys=[_key(user_id)], args=[f"{lsn:016x}", self.ttl])
            return
        _, known = self._local.pop(user_id, (0.0, 0))
        self._local[user_id] = (time.monotonic() + self.ttl, max(known, lsn))
        while len(self._local) > LOCAL_MARKS:
            self._local.popitem(last=False)

    async def get(self, user_id: uuid.UUID) -> int:
        """The user's mark; 0 when none is in force."""
        if self.client is not None:
            value = await self.client.get(_key(user_id))
            return int(value, 16) if value else 0
        expires, lsn = self._local.get(user_id, (0.0, 0))
        return lsn if expires > time.monotonic() else 0
