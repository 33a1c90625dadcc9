"""Per-user daily and monthly spend limits, by tier: reserve before a call, settle after.

A call first reserves its worst case (whole prompt + every allowed output token) with one
atomic check-and-add against both periods; concurrent calls therefore can never overspend,
because each sees the others' reservations. After the call the reservation is settled to what
the provider reported (or an estimate, flagged), releasing the difference; a failed or cancelled
call releases it all. Money is held as integer micro-dollars: exact, and Redis INCRBY-able.

The counters hold spend *including* open reservations; `reserved` is kept separately so tests
and dashboards can see what is in flight.
"""

from __future__ import annotations

import asyncio
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


class BudgetStore(Protocol):
    async def remaining(self, user: str, limits: BudgetLimits) -> Decimal | None: ...
    async def reserve(
        self, user: str, limits: BudgetLimits, amount: Decimal
    ) -> Reservation | None: ...
    async def settle(self, reservation: Reservation, actual: Decimal) -> None: ...
    async def reserved(self, user: str) -> Decimal: ...
    async def spent(self, user: str) -> tuple[Decimal, Decimal]: ...


def _periods(now: datetime) -> tuple[str, str]:
    return now.strftime("%Y%m%d"), now.strftime("%Y%m")


def _left(limit: int | None, used: int) -> int | None:
    return None if limit is None else limit - used


def _min_left(*values: int | None) -> int | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


class MemoryBudget:
    """In-process budgets. The lock makes check-and-reserve one step for this process."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._used: dict[tuple[str, str], int] = defaultdict(int)
        self._reserved: dict[str, int] = defaultdict(int)
        self._lock = asyncio.Lock()

    async def remaining(self, user: str, limits: BudgetLimits) -> Decimal | None:
        day, month = _periods(self._clock())
        left = _min_left(
            _left(limits.daily, self._used[(user, day)]),
            _left(limits.monthly, self._used[(user, month)]),
        )
        return None if left is None else from_micros(left)

    async def reserve(self, user: str, limits: BudgetLimits, amount: Decimal) -> Reservation | None:
        micros = to_micros(amount)
        async with self._lock:
            day, month = _periods(self._clock())
            for limit, period in ((limits.daily, day), (limits.monthly, month)):
                if limit is not None and self._used[(user, period)] + micros > limit:
                    return None
            self._used[(user, day)] += micros
            self._used[(user, month)] += micros
            self._reserved[user] += micros
        return Reservation(user, micros, day, month)

    async def settle(self, reservation: Reservation, actual: Decimal) -> None:
        delta = to_micros(actual) - reservation.micros
        async with self._lock:
            self._used[(reservation.user, reservation.day)] += delta
            self._used[(reservation.user, reservation.month)] += delta
            self._reserved[reservation.user] -= reservation.micros

    async def reserved(self, user: str) -> Decimal:
        return from_micros(self._reserved[user])

    async def spent(self, user: str) -> tuple[Decimal, Decimal]:
        day, month = _periods(self._clock())
        return from_micros(self._used[(user, day)]), from_micros(self._used[(user, month)])


# KEYS: day, month, reserved. ARGV: micros, daily limit (-1: none), monthly limit, day ttl,
# month ttl. Returns 1 when reserved, 0 when it would cross a limit (nothing written).
_RESERVE_LUA = """
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
return 1
"""

# KEYS: day, month, reserved. ARGV: delta (actual - reserved), reserved micros.
_SETTLE_LUA = """
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('INCRBY', KEYS[2], ARGV[1])
redis.call('DECRBY', KEYS[3], ARGV[2])
return 1
"""


class RedisBudget:
    """Budgets in Redis, shared by every process; reserve and settle are Lua scripts."""

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._reserve = redis.register_script(_RESERVE_LUA)
        self._settle = redis.register_script(_SETTLE_LUA)

    def _keys(self, user: str, day: str, month: str) -> list[str]:
        base = f"{self._prefix}:budget:{{{user}}}"  # one hash tag: one cluster slot per user
        return [f"{base}:d:{day}", f"{base}:m:{month}", f"{base}:reserved"]

    async def _used(self, user: str) -> tuple[int, int]:
        day, month = _periods(self._clock())
        values = await self._redis.mget(self._keys(user, day, month)[:2])
        return int(values[0] or 0), int(values[1] or 0)

    async def remaining(self, user: str, limits: BudgetLimits) -> Decimal | None:
        if limits.unlimited:
            return None
        day_used, month_used = await self._used(user)
        left = _min_left(_left(limits.daily, day_used), _left(limits.monthly, month_used))
        return None if left is None else from_micros(left)

    async def reserve(self, user: str, limits: BudgetLimits, amount: Decimal) -> Reservation | None:
        micros = to_micros(amount)
        day, month = _periods(self._clock())
        ok = await self._reserve(
            keys=self._keys(user, day, month),
            args=[
                micros,
                -1 if limits.daily is None else limits.daily,
                -1 if limits.monthly is None else limits.monthly,
                _DAY_TTL,
                _MONTH_TTL,
            ],
        )
        return Reservation(user, micros, day, month) if int(ok) == 1 else None

    async def settle(self, reservation: Reservation, actual: Decimal) -> None:
        delta = to_micros(actual) - reservation.micros
        await self._settle(
            keys=self._keys(reservation.user, reservation.day, reservation.month),
            args=[delta, reservation.micros],
        )

    async def reserved(self, user: str) -> Decimal:
        value = await self._redis.get(self._keys(user, "", "")[2])
        return from_micros(int(value or 0))

    async def spent(self, user: str) -> tuple[Decimal, Decimal]:
        day_used, month_used = await self._used(user)
        return from_micros(day_used), from_micros(month_used)
