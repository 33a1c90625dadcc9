"""Expected failures as data: every mutation returns its success type or one of these."""

from __future__ import annotations

import strawberry

import schema.enums  # noqa: F401  -- names the domain enums for GraphQL before use
from services.errors import DomainError, ErrorCode


@strawberry.interface(description="A failure the client can act on; `code` is stable.")
class UserError:
    code: ErrorCode
    message: str
    field: str | None = strawberry.field(
        default=None, description="The input field at fault, as a dotted path."
    )


@strawberry.type
class InvalidInputError(UserError):
    pass


@strawberry.type
class NotFoundError(UserError):
    pass


@strawberry.type
class ForbiddenError(UserError):
    pass


@strawberry.type
class UnauthenticatedError(UserError):
    pass


@strawberry.type
class VersionConflictError(UserError):
    current_version: int


@strawberry.type
class RateLimitedError(UserError):
    retry_after: int = strawberry.field(description="Seconds to wait before trying again.")


@strawberry.type
class TemporarilyUnavailableError(UserError):
    pass


@strawberry.type
class BudgetExceededError(UserError):
    pass


@strawberry.type
class EmailTakenError(UserError):
    pass


@strawberry.type
class InvalidCredentialsError(UserError):
    pass


_BY_CODE: dict[ErrorCode, type[UserError]] = {
    ErrorCode.INVALID_INPUT: InvalidInputError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.FORBIDDEN: ForbiddenError,
    ErrorCode.UNAUTHENTICATED: UnauthenticatedError,
    ErrorCode.EMAIL_TAKEN: EmailTakenError,
    ErrorCode.INVALID_CREDENTIALS: InvalidCredentialsError,
    ErrorCode.TEMPORARILY_UNAVAILABLE: TemporarilyUnavailableError,
    ErrorCode.BUDGET_EXCEEDED: BudgetExceededError,
}


def user_error(error: DomainError, *, outage_result: bool = False) -> UserError:
    """The result type of an expected failure. TEMPORARILY_UNAVAILABLE (PostgreSQL or Redis out
    of reach) is raised again instead, a top-level error with that code (HTTP 503 when nothing
    else answered), unless the field's union has `TemporarilyUnavailableError`
    (`outage_result=True`): most results have no member for it."""
    if error.code is ErrorCode.TEMPORARILY_UNAVAILABLE and not outage_result:
        raise error
    if error.code is ErrorCode.VERSION_CONFLICT:
        return VersionConflictError(
            code=error.code,
            message=error.message,
            field=error.field,
            current_version=error.current_version or 0,
        )
    if error.code is ErrorCode.RATE_LIMITED:
        return RateLimitedError(
            code=error.code,
            message=error.message,
            field=error.field,
            retry_after=error.retry_after or 1,
        )
    return _BY_CODE[error.code](code=error.code, message=error.message, field=error.field)
