"""The production event log: one capped Redis Stream per job, ids `0-<seq>`.

Appending is one Lua script (next number, XADD with that number as the entry id, PUBLISH a
wake-up), so sequence numbers have no gaps even with several writers, and a reader resumes after
any sequence number with XRANGE from `0-<seq>`. Streams of finished jobs expire; the database
keeps the terminal state for whoever comes later (see `subscriptions.terminal`).

Surviving a Redis restart (Redis here keeps nothing on disk):
- An append that cannot reach Redis is retried until Redis is back (`append_retry_seconds`), so
  the pipeline does not lose events or fail a job over a restart.
- The next number is the greatest of the counter, the stream's last id and the highest number
  this process appended for the job (`floor`): after a restart that emptied Redis, numbering
  continues where it was, so subscribers that resume after their last number miss nothing and
  see nothing twice.
- Each entry carries a unique id; an append retried after a lost reply finds its own entry
  instead of adding it twice.
- A writer remembers its recent events per job (`_Recent`). When its next append finds the
  stream behind what it wrote (Redis lost them before any reader caught up), it first puts
  them back with their numbers: readers resuming after their last number miss nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

import keyspace
from redis_connection import CLUSTER_OUTAGE, RedisClient
from subscriptions.events import ProgressEvent

log = logging.getLogger("coursegen.live")

# KEYS: stream, counter. ARGV: payload, cap, ttl, wake channel, floor, uid, check-behind.
# Returns the event's number; or -1 - top when the stream holds less than this writer wrote
# (Redis lost data): the writer replays what it remembers, then appends again.
_APPEND = """
local uid = ARGV[6]
local recent = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 16)
for _, entry in ipairs(recent) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'u' and fields[i + 1] == uid then
      return tonumber(string.match(entry[1], '%-(%d+)$'))
    end
  end
end
local top = 0
if recent[1] then top = tonumber(string.match(recent[1][1], '%-(%d+)$')) end
local floor = tonumber(ARGV[5])
if ARGV[7] == '1' and floor > top then return -1 - top end
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
if top > seq then seq = top end
if floor > seq then seq = floor end
seq = seq + 1
redis.call('SET', KEYS[2], seq, 'EX', ARGV[3])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '0-' .. seq, 'e', ARGV[1], 'u', uid)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], seq)
return seq
"""

# KEYS: stream, counter. ARGV: cap, ttl, wake channel, then (seq, payload, uid) triples in
# order. Puts back the entries newer than the stream's last one; returns the new last number.
_REPLAY = """
local top = 0
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then top = tonumber(string.match(last[1][1], '%-(%d+)$')) end
for i = 4, #ARGV, 3 do
  local seq = tonumber(ARGV[i])
  if seq > top then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '0-' .. seq, 'e', ARGV[i + 1],
      'u', ARGV[i + 2])
    top = seq
  end
end
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
if top > counter then counter = top end
redis.call('SET', KEYS[2], counter, 'EX', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], top)
return top
"""

_RETRYABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
    *CLUSTER_OUTAGE,
)


# The append and replay scripts take the stream and its counter together: on a Redis Cluster both
# keys must hash to one slot, so the job id is their hash tag (`{...}`: only it is hashed).
def stream_key(job_id: uuid.UUID) -> str:
    return keyspace.key("progress", f"{{{job_id}}}", "events")


def counter_key(job_id: uuid.UUID) -> str:
    return keyspace.key("progress", f"{{{job_id}}}", "seq")


def wake_channel(job_id: uuid.UUID) -> str:
    return keyspace.key("progress", str(job_id), "wake")


def job_of_wake_channel(channel: str) -> uuid.UUID | None:
    parts = channel.split(":")
    if len(parts) != 4 or parts[:2] != [keyspace.current(), "progress"] or parts[3] != "wake":
        return None
    try:
        return uuid.UUID(parts[2])
    except ValueError:
        return None


class _Recent:
    """What one writer appended lately to one job's log: its last number, and the events of
    the last `KEEP_SECONDS` (at most `KEEP`), to put back after Redis lost them."""

    KEEP = 128
    KEEP_SECONDS = 600.0

    __slots__ = ("entries", "floor")

    def __init__(self) -> None:
        self.floor = 0
        self.entries: deque[tuple[int, bytes, str, float]] = deque(maxlen=self.KEEP)

    def add(self, seq: int, payload: bytes, uid: str) -> None:
        self.floor = max(self.floor, seq)
        now = time.monotonic()
        while self.entries and self.entries[0][3] < now - self.KEEP_SECONDS:
            self.entries.popleft()
        self.entries.append((seq, payload, uid, now))

    def after(self, top: int) -> list[tuple[int, bytes, str]]:
        horizon = time.monotonic() - self.KEEP_SECONDS
        return sorted(
            (seq, payload, uid)
            for seq, payload, uid, at in self.entries
            if seq > top and at >= horizon
        )


class RedisProgressLog:
    def __init__(
        self,
        client: RedisClient,
        *,
        capacity: int = 10_000,
        ttl_seconds: int = 7 * 24 * 3600,
        finished_ttl_seconds: int = 3600,
        append_retry_seconds: float = 60.0,
        remembered_jobs: int = 512,
    ) -> None:
        # redis-py types replies as unions of raw protocol shapes; we decode them ourselves.
        self.client: Any = client
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self.finished_ttl_seconds = finished_ttl_seconds
        self.append_retry_seconds = append_retry_seconds
        self._append = client.register_script(_APPEND)
        self._replay = client.register_script(_REPLAY)
        self._recent: OrderedDict[uuid.UUID, _Recent] = OrderedDict()
        self._remembered = remembered_jobs

    def _floor(self, job_id: uuid.UUID) -> int:
        recent = self._recent.get(job_id)
        return recent.floor if recent is not None else 0

    def _remember(self, job_id: uuid.UUID, seq: int, payload: bytes, uid: str) -> None:
        recent = self._recent.get(job_id)
        if recent is None:
            recent = self._recent[job_id] = _Recent()
        recent.add(seq, payload, uid)
        self._recent.move_to_end(job_id)
        while len(self._recent) > self._remembered:
            self._recent.popitem(last=False)

    async def _put_back(self, job_id: uuid.UUID, top: int) -> None:
        """Redis lost events this process appended: put back those it still remembers."""
        recent = self._recent.get(job_id)
        entries = recent.after(top) if recent is not None else []
        log.warning(
            "progress log of job %s: Redis lost events after %d; putting back %d",
            job_id,
            top,
            len(entries),
        )
        args: list[Any] = [self.capacity, self.ttl_seconds, wake_channel(job_id)]
        for seq, payload, uid in entries:
            args.extend((seq, payload, uid))
        await self._replay(keys=[stream_key(job_id), counter_key(job_id)], args=args)

    async def append(self, job_id: uuid.UUID, type: str, **fields: Any) -> ProgressEvent:
        event = ProgressEvent(seq=0, type=type, job_id=job_id, **fields)
        payload = orjson.dumps({k: v for k, v in event.to_json().items() if k != "seq"})
        ttl = self.finished_ttl_seconds if event.terminal else self.ttl_seconds
        uid = uuid.uuid4().hex
        deadline = time.monotonic() + self.append_retry_seconds
        delay = 0.05
        check_behind = True
        while True:
            try:
                seq = await self._append(
                    keys=[stream_key(job_id), counter_key(job_id)],
                    args=[
                        payload,
                        self.capacity,
                        ttl,
                        wake_channel(job_id),
                        self._floor(job_id),
                        uid,
                        "1" if check_behind else "0",
                    ],
                )
                if int(seq) >= 0:
                    break
                await self._put_back(job_id, top=-1 - int(seq))
                check_behind = False
            except _RETRYABLE:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "progress log: Redis unreachable, retrying the append of job %s", job_id
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        event.seq = int(seq)
        self._remember(job_id, event.seq, payload, uid)
        return event

    @staticmethod
    def _decode(entry_id: bytes | str, fields: dict[Any, Any]) -> ProgressEvent:
        raw_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        data = orjson.loads(fields.get(b"e") or fields["e"])
        data["seq"] = int(raw_id.split("-", 1)[1])
        return ProgressEvent.from_json(data)

    async def read(
        self, job_id: uuid.UUID, after: int = 0, limit: int | None = None
    ) -> list[ProgressEvent]:
        entries = await self.client.xrange(
            stream_key(job_id), min=f"(0-{after}", max="+", count=limit
        )
        return [self._decode(entry_id, fields) for entry_id, fields in entries]

    async def last(self, job_id: uuid.UUID) -> ProgressEvent | None:
        entries = await self.client.xrevrange(stream_key(job_id), max="+", min="-", count=1)
        return self._decode(*entries[0]) if entries else None

    async def tail(self, job_id: uuid.UUID, count: int) -> list[ProgressEvent]:
        entries = await self.client.xrevrange(stream_key(job_id), max="+", min="-", count=count)
        return [self._decode(entry_id, fields) for entry_id, fields in reversed(entries)]

    async def follow(self, job_id: uuid.UUID, after: int = 0) -> AsyncIterator[ProgressEvent]:
        """Events after `after` until a terminal one, polling (for scripts and tests only:
        live transports share one reader per job and process through `ProgressHub`)."""
        last = after
        while True:
            for event in await self.read(job_id, last):
                last = event.seq
                yield event
                if event.terminal:
                    return
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        return None
