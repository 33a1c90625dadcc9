"""Expected failures with stable codes; the API turns them into `UserError` results."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_INPUT = "INVALID_INPUT"
    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    RATE_LIMITED = "RATE_LIMITED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
    ENTITY_DELETED = "ENTITY_DELETED"
    UNKNOWN_MUTATION = "UNKNOWN_MUTATION"


class DomainError(Exception):
    """A failure the caller can act on; `message` is written for a person."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        current_version: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.current_version = current_version
        self.retry_after = retry_after

    @property
    def extensions(self) -> dict[str, str]:
        """Read by graphql-core when a query resolver raises: the code reaches the client."""
        extensions = {"code": self.code.value}
        if self.field:
            extensions["field"] = self.field
        if self.retry_after is not None:
            extensions["retryAfter"] = str(self.retry_after)
        return extensions


def not_found(what: str, field: str | None = None) -> DomainError:
    # Also used for things the viewer may not see: existence is not disclosed.
    return DomainError(ErrorCode.NOT_FOUND, f"No {what} with that id.", field=field)


def forbidden(message: str = "You may not change this.") -> DomainError:
    return DomainError(ErrorCode.FORBIDDEN, message)


def invalid(message: str, field: str | None = None) -> DomainError:
    return DomainError(ErrorCode.INVALID_INPUT, message, field=field)
