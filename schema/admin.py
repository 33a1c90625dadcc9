"""The operator's surface in the schema: `admin { usage queue deadLetters modelEndpoints }`
and `replayDeadLetter`. Operators only (role admin); FORBIDDEN for everyone else, on every
field (services/operations.py says why FORBIDDEN and not NOT_FOUND)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

import schema.enums  # noqa: F401  -- names the domain enums for GraphQL before use
from ai.breaker import BreakerState
from generation.dead_letters import Replay
from generation.queue_status import QueueStatus
from models import GenerationJob as JobRow
from resolvers import admin as resolve
from schema.errors import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnauthenticatedError,
    user_error,
)
from schema.generation import GenerationJob
from services.errors import DomainError
from services.model_usage import ModelDay, UsageReport, UserDay
from services.operations import EndpointHealth

BreakerStateEnum = strawberry.enum(BreakerState, name="BreakerState")


@strawberry.type(description="One model endpoint's share of a user's day.")
class ModelDayUsage:
    row: strawberry.Private[ModelDay]

    @strawberry.field
    def model(self) -> str:
        return self.row.model

    @strawberry.field(description="Model calls answered (cache hits and shared calls: none).")
    def calls(self) -> int:
        return self.row.calls

    @strawberry.field
    def tokens_in(self) -> int:
        return self.row.tokens_in

    @strawberry.field
    def tokens_out(self) -> int:
        return self.row.tokens_out

    @strawberry.field(description="US dollars.")
    def cost(self) -> float:
        return float(self.row.cost_usd)


@strawberry.type(description="What one user's course generation used on one UTC day.")
class UserDayUsage:
    row: strawberry.Private[UserDay]

    @strawberry.field
    def day(self) -> date:
        return self.row.day

    @strawberry.field
    def user_id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.user_id))

    @strawberry.field
    def email(self) -> str:
        return self.row.email

    @strawberry.field
    def calls(self) -> int:
        return self.row.calls

    @strawberry.field
    def tokens_in(self) -> int:
        return self.row.tokens_in

    @strawberry.field
    def tokens_out(self) -> int:
        return self.row.tokens_out

    @strawberry.field(description="US dollars.")
    def cost(self) -> float:
        return float(self.row.cost_usd)

    @strawberry.field(description="By model endpoint, the most expensive first.")
    def models(self) -> list[ModelDayUsage]:
        return [ModelDayUsage(row=m) for m in self.row.models]


@strawberry.type(name="UsageReport")
class UsageReportResult:
    report: strawberry.Private[UsageReport]

    @strawberry.field(name="from")
    def start(self) -> date:
        return self.report.start

    @strawberry.field(name="to")
    def end(self) -> date:
        return self.report.end

    @strawberry.field(description="Newest day first, the biggest spender first within a day.")
    def days(self) -> list[UserDayUsage]:
        return [UserDayUsage(row=d) for d in self.report.days]

    @strawberry.field(description="More rows matched than `first`: narrow the range or the user.")
    def truncated(self) -> bool:
        return self.report.truncated


@strawberry.type
class TierDepth:
    tier: str
    waiting: int


@strawberry.type(description="The generation job queue of this deployment.")
class QueueDepth:
    status: strawberry.Private[QueueStatus]

    @strawberry.field(description="in-process (embedded) or redis.")
    def backend(self) -> str:
        return self.status.backend

    @strawberry.field(description="Jobs waiting in the queue for a worker.")
    def waiting(self) -> int:
        return self.status.waiting

    @strawberry.field
    def by_tier(self) -> list[TierDepth]:
        return [TierDepth(tier=t, waiting=n) for t, n in self.status.waiting_by_tier.items()]

    @strawberry.field(description="Jobs the database holds as queued.")
    def queued_jobs(self) -> int:
        return self.status.queued_jobs

    @strawberry.field(description="Jobs the database holds as running.")
    def running_jobs(self) -> int:
        return self.status.running_jobs

    @strawberry.field(description="Jobs failed with ATTEMPTS_EXHAUSTED (see `deadLetters`).")
    def dead_lettered(self) -> int:
        return self.status.dead_lettered


@strawberry.type(description="A job failed for having been interrupted too often.")
class DeadLetter:
    row: strawberry.Private[JobRow]

    @strawberry.field
    def job(self) -> GenerationJob:
        return GenerationJob(row=self.row)

    @strawberry.field
    def requester_id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.requester_id))


@strawberry.type(description="A model endpoint as this process sees it (breakers are shared).")
class ModelEndpointHealth:
    row: strawberry.Private[EndpointHealth]

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field(description="The model id sent upstream.")
    def model(self) -> str:
        return self.row.model

    @strawberry.field
    def breaker(self) -> BreakerState:
        return self.row.breaker

    @strawberry.field(description="Takes calls now (breaker, 429 cooldown, key not refused).")
    def available(self) -> bool:
        return self.row.available

    @strawberry.field(description="Moving average of answered calls, milliseconds.")
    def latency_ms(self) -> float:
        return self.row.latency_ms

    @strawberry.field(description="Moving average share of failed calls, 0 to 1.")
    def error_rate(self) -> float:
        return self.row.error_rate

    @strawberry.field(description="Seconds left of a rate-limit (429) cooldown.")
    def cooldown_seconds(self) -> float:
        return self.row.cooldown_seconds

    @strawberry.field(description="Seconds left of a pause after a refused API key.")
    def disabled_seconds(self) -> float:
        return self.row.disabled_seconds


@strawberry.type(description="The operator's surface: operators (role admin) only.")
class Admin:
    @strawberry.field(
        description="Model spend and tokens per user and per UTC day, `from` to `to` "
        "inclusive (at most 366 days), optionally of one user."
    )
    async def usage(
        self,
        info: Info,
        from_: Annotated[date, strawberry.argument(name="from")],
        to: date,
        user_id: strawberry.ID | None = None,
        first: int = 100,
    ) -> UsageReportResult:
        report = await resolve.usage(info, from_, to, user_id, first)
        return UsageReportResult(report=report)

    @strawberry.field
    async def queue(self, info: Info) -> QueueDepth:
        return QueueDepth(status=await resolve.queue(info))

    @strawberry.field(description="Dead-lettered jobs, most recently failed first (at most 200).")
    async def dead_letters(self, info: Info, first: int = 50) -> list[DeadLetter]:
        return [DeadLetter(row=row) for row in await resolve.dead_lettered(info, first)]

    @strawberry.field(description="Health of every model endpoint the course writer may call.")
    async def model_endpoints(self, info: Info) -> list[ModelEndpointHealth]:
        return [ModelEndpointHealth(row=row) for row in await resolve.model_endpoints(info)]


@strawberry.type
class AdminQuery:
    @strawberry.field(description="The operator's surface; FORBIDDEN unless you are an operator.")
    def admin(self, info: Info) -> Admin | None:
        resolve.require_admin(info)
        return Admin()


@strawberry.type
class ReplayDeadLetterSuccess:
    replay: strawberry.Private[Replay]

    @strawberry.field
    def job(self) -> GenerationJob:
        return GenerationJob(row=self.replay.job)

    @strawberry.field(
        description="True when this call queued the job again; false when it was not "
        "dead-lettered (any more), e.g. an earlier replay already queued it."
    )
    def requeued(self) -> bool:
        return self.replay.requeued


ReplayDeadLetterResult = Annotated[
    ReplayDeadLetterSuccess
    | InvalidInputError
    | NotFoundError
    | ForbiddenError
    | UnauthenticatedError,
    strawberry.union("ReplayDeadLetterResult"),
]


@strawberry.type
class AdminMutation:
    @strawberry.mutation(
        description="Operators: run a dead-lettered job again with fresh attempts. Replaying "
        "the same job twice queues it once."
    )
    async def replay_dead_letter(self, info: Info, job_id: strawberry.ID) -> ReplayDeadLetterResult:
        try:
            replay = await resolve.replay_dead_letter(info, job_id)
        except DomainError as error:
            result: Any = user_error(error)
            return result
        return ReplayDeadLetterSuccess(replay=replay)
