"""The production event log: one capped Redis Stream per job, ids `0-<seq>`.

Appending is one Lua script (INCR the job's counter, XADD with that number as the entry id,
PUBLISH a wake-up), so sequence numbers have no gaps even with several writers, and a reader
resumes after any sequence number with XRANGE/XREAD from `0-<seq>`. Streams of finished jobs
expire; the database keeps the terminal state for whoever comes later.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis.asyncio as redis

from subscriptions.events import ProgressEvent

_APPEND = """
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '0-' .. seq, 'e', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], seq)
return seq
"""

PREFIX = "coursegen:progress"


def stream_key(job_id: uuid.UUID) -> str:
    return f"{PREFIX}:{job_id}:events"


def wake_channel(job_id: uuid.UUID) -> str:
    return f"{PREFIX}:{job_id}:wake"


class RedisProgressLog:
    def __init__(
        self,
        client: redis.Redis,
        *,
        capacity: int = 10_000,
        ttl_seconds: int = 7 * 24 * 3600,
        finished_ttl_seconds: int = 3600,
    ) -> None:
        # redis-py types replies as unions of raw protocol shapes; we decode them ourselves.
        self.client: Any = client
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self.finished_ttl_seconds = finished_ttl_seconds
        self._append = client.register_script(_APPEND)

    async def append(self, job_id: uuid.UUID, type: str, **fields: Any) -> ProgressEvent:
        event = ProgressEvent(seq=0, type=type, job_id=job_id, **fields)
        payload = orjson.dumps({k: v for k, v in event.to_json().items() if k != "seq"})
        ttl = self.finished_ttl_seconds if event.terminal else self.ttl_seconds
        seq = await self._append(
            keys=[stream_key(job_id), f"{PREFIX}:{job_id}:seq"],
            args=[payload, self.capacity, ttl, wake_channel(job_id)],
        )
        event.seq = int(seq)
        return event

    @staticmethod
    def _decode(entry_id: bytes | str, fields: dict[Any, Any]) -> ProgressEvent:
        raw_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        data = orjson.loads(fields.get(b"e") or fields["e"])
        data["seq"] = int(raw_id.split("-", 1)[1])
        return ProgressEvent.from_json(data)

    async def read(self, job_id: uuid.UUID, after: int = 0) -> list[ProgressEvent]:
        entries = await self.client.xrange(stream_key(job_id), min=f"(0-{after}", max="+")
        return [self._decode(entry_id, fields) for entry_id, fields in entries]

    async def follow(self, job_id: uuid.UUID, after: int = 0) -> AsyncIterator[ProgressEvent]:
        """Events after `after` until a terminal one; blocks on XREAD between them."""
        last = after
        while True:
            reply = await self.client.xread({stream_key(job_id): f"0-{last}"}, block=5000)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    event = self._decode(entry_id, fields)
                    last = event.seq
                    yield event
                    if event.terminal:
                        return

    async def close(self) -> None:
        return None
