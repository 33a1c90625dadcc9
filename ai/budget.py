"""Per-user daily and monthly spend limits, by tier: reserve before a call, settle after.

A call first reserves its worst case (whole prompt + every allowed output token) with one
atomic check-and-add against both periods; concurrent calls therefore can never overspend,
because each sees the others' reservations. After the call the reservation is settled to what
the provider reported (or an estimate, flagged), releasing the difference; a failed or cancelled
call releases it all. Money is held as integer micro-dollars: exact, and Redis INCRBY-able.

The counters hold spend *including* open reservations; `reserved` is kept separately so tests
and dashboards can see what is in flight.

A reservation expires `reservation_seconds` after it was made (longer than any call may run).
A worker that dies between reserve and settle (kill -9, a lost host) would otherwise hold the
user's money for the rest of the period: expired reservations are swept, released in full,
before every reserve and every `remaining`, so a user is never refused for money not spent. A
settle arriving after its reservation was swept records the actual cost only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from ai.config import TierBudget
from ai.pricing import from_micros, to_micros

_DAY_TTL = 3 * 24 * 3600
_MONTH_TTL = 33 * 24 * 3600
# Longer than any call (the router passes its total deadline plus a margin).
DEFAULT_RESERVATION_SECONDS = 900.0


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    daily: int | None  # micro-USD; None: unlimited
    monthly: int | None

    @classmethod
    def from_tier(cls, budget: TierBudget) -> BudgetLimits:
        return cls(
            daily=None if budget.daily_usd is None else to_micros(budget.daily_usd),
            monthly=None if budget.monthly_usd is None else to_micros(budget.monthly_usd),
        )

    @property
    def unlimited(self) -> bool:
        return self.daily is None and self.monthly is None


@dataclass(frozen=True, slots=True)
class Reservation:
    """Held by the caller; settles against the periods it was taken in, even after midnight."""

    user: str
    micros: int
    day: str
    month: str
    id: str = ""
    expires_at: float = 0.0  # epoch seconds; swept (released in full) after this

    @property
    def member(self) -> str:
        return f"{self.id}:{self.micros}:{self.day}:{self.month}"


class BudgetStore(Protocol):
    async def remaining(self, user: str, limits: BudgetLimits) -> Decimal | None: ...
    async def reserve(
        self, user: str, limits: BudgetLimits, amount: Decimal
    ) -> Reservation | None: ...
    async def settle(self, reservation: Reservation, actual: Decimal) -> None: ...
    async def reserved(self, user: str) -> Decimal: ...
    async def spent(self, user: str) -> tuple[Decimal, Decimal]: ...


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _periods(now: datetime) -> tuple[str, str]:
    return now.strftime("%Y%m%d"), now.strftime("%Y%m")


def _left(limit: int | None, used: int) -> int | None:
    return None if limit is None else limit - used


def _min_left(*values: int | None) -> int | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


class MemoryBudget:
    """In-process budgets. The lock makes check-and-reserve one step for this process."""

    def __init__(
        self,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        reservation_seconds: float = DEFAULT_RESERVATION_SECONDS,
    ) -> None:
        self._clock = clock
        self._reservation_seconds = reservation_seconds
        self._used: dict[tuple[str, str], int] = defaultdict(int)
        self._reserved: dict[str, int] = defaultdict(int)
        self._open: dict[str, dict[str, Reservation]] = defaultdict(dict)
        self._lock = asyncio.Lock()

    def _sweep(self, user: str) -> None:
        now = self._clock().timestamp()
        for rid, held in list(self._open[user].items()):
            if held.expires_at <= now:
                del self._open[user][rid]
                self._used[(user, held.day)] -= held.micros
                self._used[(user, held.month)] -= held.micros
                self._reserved[user] -= held.micros

    async def remaining(self, user: str, limits: BudgetLimits) -> Decimal | None:
        async with self._lock:
            self._sweep(user)
        day, month = _periods(self._clock())
        left = _min_left(
            _left(limits.daily, self._used[(user, day)]),
            _left(limits.monthly, self._used[(user, month)]),
        )
        return None if left is None else from_micros(left)

    async def reserve(self, user: str, limits: BudgetLimits, amount: Decimal) -> Reservation | None:
        micros = to_micros(amount)
        async with self._lock:
            self._sweep(user)
            now = self._clock()
            day, month = _periods(now)
            for limit, period in ((limits.daily, day), (limits.monthly, month)):
                if limit is not None and self._used[(user, period)] + micros > limit:
                    return None
            self._used[(user, day)] += micros
            self._used[(user, month)] += micros
            self._reserved[user] += micros
            held = Reservation(
                user,
                micros,
                day,
                month,
                uuid.uuid4().hex,
                now.timestamp() + self._reservation_seconds,
            )
            self._open[user][held.id] = held
        return held

    async def settle(self, reservation: Reservation, actual: Decimal) -> None:
        cost = to_micros(actual)
        async with self._lock:
            still_held = self._open[reservation.user].pop(reservation.id, None) is not None
            # Swept meanwhile: the hold is gone already; only the actual cost is added.
            delta = cost - reservation.micros if still_held else cost
            self._used[(reservation.user, reservation.day)] += delta
            self._used[(reservation.user, reservation.month)] += delta
            if still_held:
                self._reserved[reservation.user] -= reservation.micros

    async def reserved(self, user: str) -> Decimal:
        async with self._lock:
            self._sweep(user)
        return from_micros(self._reserved[user])

    async def spent(self, user: str) -> tuple[Decimal, Decimal]:
        day, month = _periods(self._clock())
        return from_micros(self._used[(user, day)]), from_micros(self._used[(user, month)])


# Every key a script touches is one of its KEYS, all under the user's hash tag: a Redis
# Cluster routes a script by its KEYS and keeps a user's budget in one slot.

# Releases expired holds of one user. KEYS: reserved, open (a sorted set: member
# "id:micros:day:month", score its expiry), then the day and month counters of each hold.
# ARGV: the members, in the same order. A hold is released only if it is still open (ZREM
# succeeds), so two sweeps of the same hold, or a sweep racing its settle, count it once.
_SWEEP_LUA = """
local released = 0
for i, member in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[2], member) == 1 then
    local micros = tonumber(string.match(member, '^[^:]+:(%d+):%d+:%d+$'))
    if micros then
      redis.call('DECRBY', KEYS[1 + 2 * i], micros)
      redis.call('DECRBY', KEYS[2 + 2 * i], micros)
      redis.call('DECRBY', KEYS[1], micros)
    end
    released = released + 1
  end
end
return released
"""

# KEYS: day, month, reserved, open. ARGV: micros, daily limit (-1: none), monthly limit, day
# ttl, month ttl, now, member, expiry. Returns 1 when reserved, 0 when it would cross a limit
# (nothing reserved), -1 when the user has expired holds: the caller sweeps them (the sweep
# must name their counters as KEYS, which only a read tells) and reserves again.
_RESERVE_LUA = """
if #redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[6], 'LIMIT', 0, 1) > 0 then return -1 end
local amount = tonumber(ARGV[1])
local day = tonumber(redis.call('GET', KEYS[1]) or '0')
local month = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[2] ~= '-1' and day + amount > tonumber(ARGV[2]) then return 0 end
if ARGV[3] ~= '-1' and month + amount > tonumber(ARGV[3]) then return 0 end
redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('INCRBY', KEYS[2], amount)
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('INCRBY', KEYS[3], amount)
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[7])
redis.call('EXPIRE', KEYS[4], ARGV[5])
return 1
"""

# KEYS: day, month, reserved, open. ARGV: actual cost, reserved micros, member. A hold that
# was swept meanwhile is released already: only the actual cost is added.
_SETTLE_LUA = """
if redis.call('ZREM', KEYS[4], ARGV[3]) == 1 then
  local delta = tonumber(ARGV[1]) - tonumber(ARGV[2])
  redis.call('INCRBY', KEYS[1], delta)
  redis.call('INCRBY', KEYS[2], delta)
  redis.call('DECRBY', KEYS[3], ARGV[2])
  return 1
end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('INCRBY', KEYS[2], ARGV[1])
return 0
"""


class RedisBudget:
    """Budgets in Redis, shared by every process; reserve and settle are Lua scripts."""

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reservation_seconds: float = DEFAULT_RESERVATION_SECONDS,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._reservation_seconds = reservation_seconds
        self._reserve = redis.register_script(_RESERVE_LUA)
        self._settle = redis.register_script(_SETTLE_LUA)
        self._sweep_script = redis.register_script(_SWEEP_LUA)

    def _base(self, user: str) -> str:
        return f"{self._prefix}:budget:{{{user}}}"  # one hash tag: one cluster slot per user

    def _keys(self, user: str, day: str, month: str) -> list[str]:
        base = self._base(user)
        return [f"{base}:d:{day}", f"{base}:m:{month}", f"{base}:reserved", f"{base}:open"]

    async def sweep(self, user: str) -> int:
        """Release the user's expired holds; how many there were."""
        reserved, open_ = self._keys(user, "", "")[2:]
        now = self._clock().timestamp()
        expired = [_text(m) for m in await self._redis.zrangebyscore(open_, "-inf", now)]
        if not expired:
            return 0
        keys = [reserved, open_]
        for member in expired:
            _, _, day, month = [*member.split(":"), "", "", "", ""][:4]
            keys.extend(self._keys(user, day, month)[:2])
        return int(await self._sweep_script(keys=keys, args=expired))

    async def _used(self, user: str) -> tuple[int, int]:
        day, month = _periods(self._clock())
        values = await self._redis.mget(self._keys(user, day, month)[:2])
        return int(values[0] or 0), int(values[1] or 0)

    async def remaining(self, user: str, limits: BudgetLimits) -> Decimal | None:
        if limits.unlimited:
            return None
        await self.sweep(user)
        day_used, month_used = await self._used(user)
        left = _min_left(_left(limits.daily, day_used), _left(limits.monthly, month_used))
        return None if left is None else from_micros(left)

    async def reserve(self, user: str, limits: BudgetLimits, amount: Decimal) -> Reservation | None:
        micros = to_micros(amount)
        now = self._clock()
        day, month = _periods(now)
        held = Reservation(
            user,
            micros,
            day,
            month,
            uuid.uuid4().hex,
            now.timestamp() + self._reservation_seconds,
        )
        args = [
            micros,
            -1 if limits.daily is None else limits.daily,
            -1 if limits.monthly is None else limits.monthly,
            _DAY_TTL,
            _MONTH_TTL,
            now.timestamp(),
            held.member,
            held.expires_at,
        ]
        keys = self._keys(user, day, month)
        ok = int(await self._reserve(keys=keys, args=args))
        for _ in range(3):  # expired holds first: each sweep leaves fewer (none, unless racing)
            if ok != -1:
                break
            await self.sweep(user)
            ok = int(await self._reserve(keys=keys, args=args))
        return held if ok == 1 else None

    async def settle(self, reservation: Reservation, actual: Decimal) -> None:
        await self._settle(
            keys=self._keys(reservation.user, reservation.day, reservation.month),
            args=[to_micros(actual), reservation.micros, reservation.member],
        )

    async def reserved(self, user: str) -> Decimal:
        await self.sweep(user)
        value = await self._redis.get(self._keys(user, "", "")[2])
        return from_micros(int(value or 0))

    async def spent(self, user: str) -> tuple[Decimal, Decimal]:
        day_used, month_used = await self._used(user)
        return from_micros(day_used), from_micros(month_used)
