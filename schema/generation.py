"""GraphQL types, inputs and results of course generation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

import schema.enums  # noqa: F401  -- names the domain enums for GraphQL before use
from models import CourseLevel, JobStatus
from models import GenerationJob as JobRow
from resolvers import generation as resolve
from schema.errors import (
    BudgetExceededError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    TemporarilyUnavailableError,
    UnauthenticatedError,
    user_error,
)
from schema.types import Course
from services.errors import DomainError


@strawberry.type
class JobError:
    code: str
    message: str


@strawberry.type
class GenerationJob:
    row: strawberry.Private[JobRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    @strawberry.field
    def status(self) -> JobStatus:
        return self.row.status

    @strawberry.field(description="outline, topics or saving.")
    def stage(self) -> str | None:
        return self.row.stage

    @strawberry.field(description="From 0 to 1.")
    def progress(self) -> float:
        return self.row.progress

    @strawberry.field
    def attempts(self) -> int:
        return self.row.attempts

    @strawberry.field
    def error(self) -> JobError | None:
        if self.row.error_code is None:
            return None
        return JobError(code=self.row.error_code, message=self.row.error_message or "")

    @strawberry.field
    async def course(self, info: Info) -> Course | None:
        record = await info.context.loaders.course_by_id.load(self.row.course_id)
        return Course(record=record) if record else None

    @strawberry.field(description="Models that wrote (part of) this course.")
    def models(self) -> list[str]:
        return list(self.row.models_used)

    @strawberry.field
    def tokens_in(self) -> int:
        return self.row.tokens_in

    @strawberry.field
    def tokens_out(self) -> int:
        return self.row.tokens_out

    @strawberry.field(description="Spent on model calls, in US dollars.")
    def cost(self) -> float:
        return float(self.row.cost_usd)

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    def started_at(self) -> datetime | None:
        return self.row.started_at

    @strawberry.field
    def finished_at(self) -> datetime | None:
        return self.row.finished_at


@strawberry.input
class GenerateCourseInput:
    topic: str = strawberry.field(description="What the course teaches (3 to 200 characters).")
    audience: str | None = strawberry.UNSET
    level: CourseLevel | None = strawberry.UNSET
    language: str | None = strawberry.UNSET
    subject_count: int | None = strawberry.field(default=strawberry.UNSET, description="1 to 12")
    topics_per_subject: int | None = strawberry.field(
        default=strawberry.UNSET, description="1 to 12"
    )
    notes: str | None = strawberry.UNSET


@strawberry.type
class GenerateCourseSuccess:
    job: GenerationJob
    course: Course | None


@strawberry.type
class CancelGenerationSuccess:
    job: GenerationJob


@strawberry.type
class RetryGenerationSuccess:
    job: GenerationJob


GenerateCourseResult = Annotated[
    GenerateCourseSuccess
    | InvalidInputError
    | BudgetExceededError
    | RateLimitedError
    | TemporarilyUnavailableError
    | UnauthenticatedError,
    strawberry.union("GenerateCourseResult"),
]
CancelGenerationResult = Annotated[
    CancelGenerationSuccess
    | InvalidInputError
    | NotFoundError
    | ForbiddenError
    | UnauthenticatedError,
    strawberry.union("CancelGenerationResult"),
]
RetryGenerationResult = Annotated[
    RetryGenerationSuccess
    | InvalidInputError
    | NotFoundError
    | ForbiddenError
    | UnauthenticatedError,
    strawberry.union("RetryGenerationResult"),
]


@strawberry.type
class GenerationQuery:
    @strawberry.field(description="A generation job of a course the viewer may see.")
    async def generation_job(self, info: Info, id: strawberry.ID) -> GenerationJob | None:
        row = await resolve.generation_job(info, id)
        return GenerationJob(row=row) if row else None


@strawberry.type
class GenerationMutation:
    @strawberry.mutation(
        description="Ask for a course; returns at once with the queued job. The same "
        "idempotencyKey returns the same job."
    )
    async def generate_course(
        self, info: Info, input: GenerateCourseInput, idempotency_key: str | None = None
    ) -> GenerateCourseResult:
        data = {k: v for k, v in vars(input).items() if v is not strawberry.UNSET}
        try:
            row, record = await resolve.generate_course(info, data, idempotency_key)
        except DomainError as error:
            return user_error(error, outage_result=True)  # type: ignore[return-value]
        return GenerateCourseSuccess(
            job=GenerationJob(row=row), course=Course(record=record) if record else None
        )

    @strawberry.mutation(description="Stop a queued or running job at once.")
    async def cancel_generation(self, info: Info, job_id: strawberry.ID) -> CancelGenerationResult:
        try:
            row = await resolve.cancel_generation(info, job_id)
        except DomainError as error:
            return user_error(error)  # type: ignore[return-value]
        return CancelGenerationSuccess(job=GenerationJob(row=row))

    @strawberry.mutation(description="Run a failed or cancelled job again.")
    async def retry_generation(self, info: Info, job_id: strawberry.ID) -> RetryGenerationResult:
        try:
            row = await resolve.retry_generation(info, job_id)
        except DomainError as error:
            return user_error(error)  # type: ignore[return-value]
        return RetryGenerationSuccess(job=GenerationJob(row=row))
