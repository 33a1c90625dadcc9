"""Circuit breakers per model endpoint: in-process, or in Redis shared by every process.

Closed: calls flow and outcomes go into a time window. When the window holds at least
`min_calls` and the failure share reaches `error_rate`, the breaker opens for `cooldown_seconds`.
After the cooldown exactly one caller gets a PROBE admission (taken atomically, with a lease so
a crashed prober cannot wedge it); everyone else is still refused while the probe is out. A probe
success closes the breaker; a probe failure re-opens it. A failure only ever pushes the open
deadline later (`max`), never earlier, so a late failure from a slow call cannot cut a cooldown
short. Outcomes that say nothing about the endpoint's health (429, 401, our cancellation) are
`release`d: they free a probe lease without closing or re-opening.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ai.config import BreakerPolicy
from observability import metrics


class Admission(StrEnum):
    ALLOW = "allow"
    PROBE = "probe"
    DENY = "deny"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # cooldown over, the probe slot is free
    PROBING = "probing"  # cooldown over, a probe is in flight

    @property
    def available(self) -> bool:
        return self in (BreakerState.CLOSED, BreakerState.HALF_OPEN)


class Outcome(StrEnum):
    SUCCESS = "ok"
    FAILURE = "fail"
    RELEASE = "release"


class Breaker(Protocol):
    async def state(self, key: str) -> BreakerState: ...
    async def admit(self, key: str) -> Admission: ...
    async def record(self, key: str, outcome: Outcome, *, probe: bool) -> None: ...


@dataclass
class _Circuit:
    events: deque[tuple[float, bool]] = field(default_factory=deque)  # (when, failed)
    open_until: float = 0.0  # 0: closed
    probe_until: float = 0.0  # > now: a probe lease is out


class MemoryBreaker:
    """One process's breakers. No awaits inside a transition, so each is atomic on the loop."""

    def __init__(
        self,
        policy: BreakerPolicy,
        *,
        probe_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.probe_ttl = probe_ttl
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def _circuit(self, key: str) -> _Circuit:
        return self._circuits.setdefault(key, _Circuit())

    async def state(self, key: str) -> BreakerState:
        c, now = self._circuit(key), self._clock()
        if c.open_until == 0:
            return BreakerState.CLOSED
        if now < c.open_until:
            return BreakerState.OPEN
        return BreakerState.PROBING if c.probe_until > now else BreakerState.HALF_OPEN

    async def admit(self, key: str) -> Admission:
        c, now = self._circuit(key), self._clock()
        if c.open_until == 0:
            return Admission.ALLOW
        if now < c.open_until or c.probe_until > now:
            return Admission.DENY
        c.probe_until = now + self.probe_ttl
        return Admission.PROBE

    async def record(self, key: str, outcome: Outcome, *, probe: bool) -> None:
        self._record(key, outcome, probe=probe)
        _observe(key, open_=self._circuit(key).open_until != 0)

    def _record(self, key: str, outcome: Outcome, *, probe: bool) -> None:
        c, now = self._circuit(key), self._clock()
        cooldown = self.policy.cooldown_seconds
        if outcome is Outcome.RELEASE:
            if probe:
                c.probe_until = 0.0
            return
        if probe:
            if outcome is Outcome.SUCCESS:
                self._circuits[key] = _Circuit()
            else:
                c.open_until, c.probe_until = max(c.open_until, now + cooldown), 0.0
            return
        if c.open_until:
            # A call admitted before the breaker opened: a failure may extend, never shorten.
            if outcome is Outcome.FAILURE:
                c.open_until = max(c.open_until, now + cooldown)
            return
        horizon = now - self.policy.window_seconds
        while c.events and c.events[0][0] < horizon:
            c.events.popleft()
        c.events.append((now, outcome is Outcome.FAILURE))
        calls = len(c.events)
        failures = sum(1 for _, failed in c.events if failed)
        if calls >= self.policy.min_calls and failures / calls >= self.policy.error_rate:
            c.events.clear()
            c.open_until, c.probe_until = now + cooldown, 0.0


# Redis: one hash (open_until, probe_until) and two sorted sets (calls, failures) per circuit,
# all under one hash tag so a cluster keeps them in one slot. Time comes from the Redis server
# so every process agrees on it. Each transition is one Lua script, hence atomic.
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 "

_STATE_LUA = (
    _NOW
    + """
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until == 0 then return 'closed' end
if now < open_until then return 'open' end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if probe_until > now then return 'probing' end
return 'half_open'
"""
)

_ADMIT_LUA = (
    _NOW
    + """
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until == 0 then return 'allow' end
if now < open_until then return 'deny' end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if probe_until > now then return 'deny' end
redis.call('HSET', KEYS[1], 'probe_until', tostring(now + tonumber(ARGV[1])))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 'probe'
"""
)

# ARGV: outcome, probe(1/0), window, min_calls, error_rate, cooldown, member, ttl_ms
_RECORD_LUA = (
    _NOW
    + """
local outcome, probe = ARGV[1], ARGV[2] == '1'
local cooldown, ttl = tonumber(ARGV[6]), ARGV[8]
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if outcome == 'release' then
  if probe then redis.call('HSET', KEYS[1], 'probe_until', '0') end
  return 'released'
end
if probe then
  if outcome == 'ok' then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
    return 'closed'
  end
  redis.call('HSET', KEYS[1], 'open_until', tostring(math.max(open_until, now + cooldown)),
             'probe_until', '0')
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 'open'
end
if open_until > 0 then
  if outcome == 'fail' then
    redis.call('HSET', KEYS[1], 'open_until', tostring(math.max(open_until, now + cooldown)))
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
  return 'open'
end
local horizon = now - tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. horizon)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. horizon)
redis.call('ZADD', KEYS[2], now, ARGV[7])
if outcome == 'fail' then redis.call('ZADD', KEYS[3], now, ARGV[7]) end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
local calls, failures = redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3])
if calls >= tonumber(ARGV[4]) and failures / calls >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'open_until', tostring(now + cooldown), 'probe_until', '0')
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('DEL', KEYS[2], KEYS[3])
  return 'open'
end
return 'closed'
"""
)


def _observe(key: str, *, open_: bool) -> None:
    """Prometheus, as this process last saw the circuit; `/metrics` re-reads it at scrape."""
    metrics.BREAKER_STATE.labels(key).set(1 if open_ else 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBreaker:
    """The same breaker with its state in Redis, shared by every web and worker process."""

    def __init__(self, redis: Any, policy: BreakerPolicy, *, probe_ttl: float, prefix: str) -> None:
        self.policy = policy
        self.probe_ttl = probe_ttl
        self.prefix = prefix
        # Keys outlive an open period and its probe, then vanish on their own.
        span = policy.window_seconds + policy.cooldown_seconds + probe_ttl
        self._ttl_ms = int(max(span * 2, 60.0) * 1000)
        self._state = redis.register_script(_STATE_LUA)
        self._admit = redis.register_script(_ADMIT_LUA)
        self._record = redis.register_script(_RECORD_LUA)

    def _keys(self, key: str) -> list[str]:
        base = f"{self.prefix}:breaker:{{{key}}}"
        return [base, f"{base}:calls", f"{base}:failures"]

    async def state(self, key: str) -> BreakerState:
        return BreakerState(_text(await self._state(keys=self._keys(key)[:1])))

    async def admit(self, key: str) -> Admission:
        result = await self._admit(keys=self._keys(key)[:1], args=[self.probe_ttl, self._ttl_ms])
        return Admission(_text(result))

    async def record(self, key: str, outcome: Outcome, *, probe: bool) -> None:
        p = self.policy
        result = await self._record(
            keys=self._keys(key),
            args=[
                outcome.value,
                "1" if probe else "0",
                p.window_seconds,
                p.min_calls,
                p.error_rate,
                p.cooldown_seconds,
                uuid.uuid4().hex,
                self._ttl_ms,
            ],
        )
        if _text(result) != "released":
            _observe(key, open_=_text(result) == "open")
