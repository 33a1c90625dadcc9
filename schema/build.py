"""Builds the Schema: types, error masking, and logging of unexpected errors with request ids."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from schema.cost import QueryCost
from schema.errors import (
    BudgetExceededError,
    EmailTakenError,
    ForbiddenError,
    InvalidCredentialsError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    TemporarilyUnavailableError,
    UnauthenticatedError,
    VersionConflictError,
)
from schema.mutations import Mutation
from schema.observe import ObserveOperation
from schema.query import Query
from schema.subscription import LiveMutation, SharedEventExecutionContext, Subscription
from services.errors import DomainError
from settings import Settings

log = logging.getLogger("coursegen.graphql")

MASKED_MESSAGE = "Unexpected error. It has been logged; quote the request id to support."


def is_client_error(error: GraphQLError) -> bool:
    """Errors the client caused or may know about: syntax, validation, DomainError.

    A GraphQLError as the cause is graphql-core's own wording about the request (e.g. a
    variable's value not in an enum), never an internal detail.
    """
    original = error.original_error
    return original is None or isinstance(original, DomainError | GraphQLError)


class CoursegenSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        request_id = getattr(getattr(execution_context, "context", None), "request_id", None)
        for error in errors:
            if is_client_error(error):
                continue
            log.error(
                "unexpected error in %s: %s",
                ".".join(str(p) for p in error.path or []) or "operation",
                error.message,
                exc_info=error.original_error,
                extra={"request_id": request_id},
            )


def build_schema(settings: Settings) -> strawberry.Schema:
    # Extensions are factories: Strawberry makes fresh instances for each operation.
    extensions: list[Any] = [
        ObserveOperation,
        # What a document may ask, refused in parsing/validation before any resolver runs.
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
        lambda: MaxAliasesLimiter(max_alias_count=settings.max_query_aliases),
        lambda: QueryCost(settings),
        lambda: MaskErrors(
            should_mask_error=lambda error: not is_client_error(error),
            error_message=MASKED_MESSAGE,
        ),
    ]
    if not settings.introspection_enabled:
        extensions.insert(1, DisableIntrospection)
    return CoursegenSchema(
        query=Query,
        mutation=merge_types("Mutation", (Mutation, LiveMutation)),
        subscription=Subscription,
        execution_context_class=SharedEventExecutionContext,
        # Error types reached only through the UserError interface must still be in the schema.
        types=[
            InvalidInputError,
            NotFoundError,
            ForbiddenError,
            UnauthenticatedError,
            VersionConflictError,
            EmailTakenError,
            InvalidCredentialsError,
            RateLimitedError,
            TemporarilyUnavailableError,
            BudgetExceededError,
        ],
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=settings.is_production),
    )
