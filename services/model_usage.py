"""The model-usage ledger (models/usage.py): booking what a run used, and reading it back as
spend and tokens per user and per UTC day for the operator."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from tortoise import connections
from tortoise.functions import Sum

from ai.pricing import from_micros, to_micros
from ai.writer import ModelTally
from models import ModelUsage, User
from services.errors import invalid

# A report spans at most this many days: a year of rows per user is already a lot to read.
MAX_REPORT_DAYS = 366
MAX_REPORT_ROWS = 1000

# One statement per (user, day, model): concurrent runs of one user add up instead of racing
# (SQLite >= 3.24 and PostgreSQL share this syntax).
_UPSERT = (
    "INSERT INTO model_usage (user_id, day, model, calls, tokens_in, tokens_out, cost_micros) "
    "VALUES ({}) ON CONFLICT (user_id, day, model) DO UPDATE SET "
    "calls = model_usage.calls + excluded.calls, "
    "tokens_in = model_usage.tokens_in + excluded.tokens_in, "
    "tokens_out = model_usage.tokens_out + excluded.tokens_out, "
    "cost_micros = model_usage.cost_micros + excluded.cost_micros"
)


def today() -> date:
    return datetime.now(UTC).date()


async def book(
    user_id: uuid.UUID, by_model: dict[str, ModelTally], day: date | None = None
) -> None:
    """Add a run's usage to its user's rows of `day` (today, UTC); inside the caller's
    transaction when there is one, so the ledger and the job's totals commit together."""
    tallies = [(model, tally) for model, tally in by_model.items() if tally.calls]
    if not tallies:
        return
    db = connections.get("default")
    sqlite = db.capabilities.dialect == "sqlite"
    marks = ", ".join("?" if sqlite else f"${i}" for i in range(1, 8))
    statement = _UPSERT.format(marks)
    when = day or today()
    for model, tally in tallies:
        await db.execute_query(
            statement,
            [
                str(user_id) if sqlite else user_id,
                when.isoformat() if sqlite else when,
                model[:100],
                tally.calls,
                tally.tokens_in,
                tally.tokens_out,
                to_micros(tally.cost_usd),
            ],
        )


@dataclass
class ModelDay:
    model: str
    calls: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal


@dataclass
class UserDay:
    """One user's usage on one UTC day, in total and per model."""

    day: date
    user_id: uuid.UUID
    email: str
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal(0)
    models: list[ModelDay] = field(default_factory=list)


@dataclass
class UsageReport:
    start: date
    end: date
    days: list[UserDay]
    # More (user, day) rows matched than `limit`: narrow the range or pick a user.
    truncated: bool


def _check_range(start: date, end: date, limit: int) -> None:
    if end < start:
        raise invalid("`to` must not be before `from`.", field="to")
    if (end - start).days + 1 > MAX_REPORT_DAYS:
        raise invalid(f"A report spans at most {MAX_REPORT_DAYS} days.", field="to")
    if not 1 <= limit <= MAX_REPORT_ROWS:
        raise invalid(f"`first` must be between 1 and {MAX_REPORT_ROWS}.", field="first")


async def usage_report(
    start: date, end: date, user_id: uuid.UUID | None = None, limit: int = 100
) -> UsageReport:
    """Spend and tokens per user and per day from `start` to `end` (inclusive, UTC), newest
    day first and the biggest spender first within a day; at most `limit` (user, day) rows,
    chosen in SQL so a long range does not read the whole ledger."""
    _check_range(start, end, limit)
    query = ModelUsage.filter(day__gte=start, day__lte=end)
    if user_id is not None:
        query = query.filter(user_id=user_id)
    totals = (
        await query.annotate(
            all_calls=Sum("calls"),
            all_in=Sum("tokens_in"),
            all_out=Sum("tokens_out"),
            all_cost=Sum("cost_micros"),
        )
        .group_by("user_id", "day")
        .order_by("-day", "-all_cost", "user_id")
        .limit(limit + 1)
        .values("user_id", "day", "all_calls", "all_in", "all_out", "all_cost")
    )
    chosen = totals[:limit]
    days = {
        (_uuid(row["user_id"]), _day(row["day"])): UserDay(
            day=_day(row["day"]),
            user_id=_uuid(row["user_id"]),
            email="",
            calls=int(row["all_calls"] or 0),
            tokens_in=int(row["all_in"] or 0),
            tokens_out=int(row["all_out"] or 0),
            cost_usd=from_micros(int(row["all_cost"] or 0)),
        )
        for row in chosen
    }
    if days:
        users = list({user for user, _ in days})
        dates = list({day for _, day in days})
        for row in await query.filter(user_id__in=users, day__in=dates).values(
            "user_id", "day", "model", "calls", "tokens_in", "tokens_out", "cost_micros"
        ):
            entry = days.get((_uuid(row["user_id"]), _day(row["day"])))
            if entry is not None:
                entry.models.append(
                    ModelDay(
                        model=str(row["model"]),
                        calls=int(row["calls"]),
                        tokens_in=int(row["tokens_in"]),
                        tokens_out=int(row["tokens_out"]),
                        cost_usd=from_micros(int(row["cost_micros"])),
                    )
                )
        emails = await _emails(set(users))
        for entry in days.values():
            entry.email = emails.get(entry.user_id, "")
            entry.models.sort(key=lambda m: (-m.cost_usd, m.model))
    return UsageReport(start, end, list(days.values()), truncated=len(totals) > limit)


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value))


async def _emails(user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not user_ids:
        return {}
    rows = await User.filter(id__in=list(user_ids)).values_list("id", "email")
    return {_uuid(user_id): str(email) for user_id, email in rows}
