"""Builds the Schema: types, error masking, and logging of unexpected errors with request ids."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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

from fastpath.learn import LearnDocuments
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
from schema.read_routing import ReadRouting
from schema.subscription import LiveMutation, SharedEventExecutionContext, Subscription
from schema.sync import SyncSubscription
from services.availability import MESSAGE, is_unavailable
from services.errors import DomainError, ErrorCode
from settings import Settings

if TYPE_CHECKING:
    from fastpath.endpoint import FastPath

log = logging.getLogger("coursegen.graphql")

MASKED_MESSAGE = "Unexpected error. It has been logged; quote the request id to support."


def is_client_error(error: GraphQLError) -> bool:
    """Errors the client caused or may know about: syntax, validation, DomainError.

    A GraphQLError as the cause is graphql-core's own wording about the request (e.g. a
    variable's value not in an enum), never an internal detail.
    """
    original = error.original_error
    return original is None or isinstance(original, DomainError | GraphQLError)


def outage_error(error: GraphQLError) -> GraphQLError | None:
    """TEMPORARILY_UNAVAILABLE in place of an error caused by PostgreSQL or Redis being out of
    reach: the client should retry, not report a bug (nothing internal is shown)."""
    original = error.original_error
    if original is None or isinstance(original, DomainError) or not is_unavailable(original):
        return None
    return GraphQLError(
        message=MESSAGE,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": ErrorCode.TEMPORARILY_UNAVAILABLE.value},
    )


class _MaskErrors(MaskErrors):
    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return outage_error(error) or super().anonymise_error(error)


class CoursegenSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        request_id = getattr(getattr(execution_context, "context", None), "request_id", None)
        for error in errors:
            if is_client_error(error):
                continue
            if outage_error(error) is not None:
                log.warning(
                    "%s: a backing service is unavailable: %r",
                    ".".join(str(p) for p in error.path or []) or "operation",
                    error.original_error,
                    extra={"request_id": request_id},
                )
                continue
            log.error(
                "unexpected error in %s: %s",
                ".".join(str(p) for p in error.path or []) or "operation",
                error.message,
                exc_info=error.original_error,
                extra={"request_id": request_id},
            )


def build_schema(
    settings: Settings,
    fast_path: FastPath | None = None,
    extra_extensions: Sequence[Any] = (),
) -> strawberry.Schema:
    """`extra_extensions`: more extension factories, run first (tracing, trusted documents)."""
    # Extensions are factories: Strawberry makes fresh instances for each operation.
    extensions: list[Any] = [
        *extra_extensions,
        ObserveOperation,
        # What a document may ask, refused in parsing/validation before any resolver runs.
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
        lambda: MaxAliasesLimiter(max_alias_count=settings.max_query_aliases),
        lambda: QueryCost(settings),
        lambda: _MaskErrors(
            should_mask_error=lambda error: not is_client_error(error),
            error_message=MASKED_MESSAGE,
        ),
        # Innermost: the resolvers of a dashboard or course-page query read from a replica.
        ReadRouting,
    ]
    if not settings.introspection_enabled:
        extensions.insert(1, DisableIntrospection)
    if fast_path is not None:
        extensions.append(lambda: LearnDocuments(fast_path))
    return CoursegenSchema(
        query=Query,
        mutation=merge_types("Mutation", (Mutation, LiveMutation)),
        subscription=merge_types("Subscription", (Subscription, SyncSubscription)),
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
