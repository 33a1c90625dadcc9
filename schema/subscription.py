"""Live progress in the schema: the `generationProgress` subscription and `streamToken`."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import strawberry
from graphql import FieldNode, OperationType, SelectionSetNode, VariableNode, visit
from graphql.language import Visitor
from strawberry.scalars import JSON
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import Info

from resolvers import live as resolve
from schema.errors import InvalidInputError, NotFoundError, UnauthenticatedError, user_error
from services.errors import DomainError
from subscriptions import events
from subscriptions.hub import Follower


@strawberry.type(
    description="One step of a generation job. `seq` numbers a job's events from 1 with no "
    "gaps: pass the last one you received as `after` to resume without loss or repetition."
)
class ProgressEvent:
    seq: int
    type: str = strawberry.field(
        description="queued, started, stage, outline_ready, topic_started, topic_done; then "
        "one terminal type: completed, failed or cancelled (the last event of a run)."
    )
    job_id: strawberry.ID
    progress: float = strawberry.field(description="From 0 to 1.")
    stage: str | None = strawberry.field(description="outline, topics or saving.")
    message: str | None
    course_id: strawberry.ID | None
    at: datetime
    data: JSON | None = strawberry.field(
        description="Details of the step: subject and topic titles, counts; for `failed`, the "
        "error `code`."
    )


_CACHE_SIZE = 256


class _GraphQLEvents:
    """The events of a follower as GraphQL objects. Every subscriber of a job in this process
    receives the same event objects, so each is converted once (a small cache by identity)."""

    _cache: OrderedDict[int, tuple[events.ProgressEvent, ProgressEvent]] = OrderedDict()

    def __init__(self, follower: Follower) -> None:
        self._follower = follower

    def __aiter__(self) -> _GraphQLEvents:
        return self

    async def __anext__(self) -> ProgressEvent:
        return self.convert(await self._follower.__anext__())

    async def aclose(self) -> None:
        await self._follower.aclose()

    @classmethod
    def convert(cls, event: events.ProgressEvent) -> ProgressEvent:
        cached = cls._cache.get(id(event))
        if cached is not None and cached[0] is event:
            return cached[1]
        converted = ProgressEvent(
            seq=event.seq,
            type=event.type,
            job_id=strawberry.ID(str(event.job_id)),
            progress=event.progress,
            stage=event.stage,
            message=event.message,
            course_id=strawberry.ID(str(event.course_id)) if event.course_id else None,
            at=datetime.fromtimestamp(event.at, UTC),
            data=cast(Any, event.data or None),
        )
        cls._cache[id(event)] = (event, converted)
        if len(cls._cache) > _CACHE_SIZE:
            cls._cache.popitem(last=False)
        return converted


class _VariablesIn(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_variable(self, node: VariableNode, *_: object) -> None:
        self.names.add(node.name.value)


class SharedEventExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """The schema's execution context: as Strawberry's, except that a subscription event whose
    root is a `ProgressEvent` is executed once per process for every subscriber that asked
    for the same selection, not once per subscriber (a job with 5,000 subscribers costs one
    execution per event, not 5,000). The result depends only on the event, the document and
    the variables the selection uses: `ProgressEvent` fields are plain values that do not
    depend on the viewer (keep it so)."""

    _results: OrderedDict[tuple[object, ...], tuple[object, Any]] = OrderedDict()
    _selection_variables: dict[tuple[str, str | None], frozenset[str]] = {}

    def execute_operation(self, serially: bool | None = None) -> Any:
        root = self.root_value
        operation = self.operation
        if not isinstance(root, ProgressEvent) or operation.operation != OperationType.SUBSCRIPTION:
            return super().execute_operation(serially)
        key = self._key(root)
        cached = self._results.get(key)
        if cached is not None and cached[0] is root:
            return cached[1]
        result = super().execute_operation(serially)
        if not self.is_awaitable(result) and not getattr(result, "errors", None):
            self._results[key] = (root, result)
            if len(self._results) > _CACHE_SIZE:
                self._results.popitem(last=False)
        return result

    def _key(self, root: ProgressEvent) -> tuple[object, ...]:
        operation = self.operation
        source = operation.loc.source.body if operation.loc else repr(operation)
        name = operation.name.value if operation.name else None
        names = self._selection_variables.get((source, name))
        if names is None:
            names = _variables_below_root_fields(operation.selection_set)
            if len(self._selection_variables) > _CACHE_SIZE:
                self._selection_variables.clear()
            self._selection_variables[(source, name)] = names
        values = self.variable_values.coerced
        used = tuple(sorted((n, repr(values.get(n))) for n in names))
        return (id(root), source, name, used)


def _variables_below_root_fields(selection: SelectionSetNode) -> frozenset[str]:
    """Variables an event's rendering may depend on: all of them, except those used only as
    arguments of the root field (they chose the source stream, e.g. `jobId` and `after`)."""
    visitor = _VariablesIn()
    for node in selection.selections:
        if not isinstance(node, FieldNode):
            visit(node, visitor)  # a fragment at the root: be conservative
            continue
        for directive in node.directives or ():
            visit(directive, visitor)
        if node.selection_set is not None:
            visit(node.selection_set, visitor)
    return frozenset(visitor.names)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The progress of a generation job of a course you may see: the events "
        "after `after` (all of them when omitted), then new ones as they happen, until the "
        "terminal event. A job that ended long ago still yields its terminal event."
    )
    async def generation_progress(
        self, info: Info, job_id: strawberry.ID, after: int | None = None
    ) -> AsyncIterator[ProgressEvent]:
        follower = await resolve.generation_progress(info, job_id, after)
        return _GraphQLEvents(follower)


@strawberry.type
class StreamTokenSuccess:
    token: str
    expires_in: int = strawberry.field(description="Seconds the token can open the stream.")
    url: str = strawberry.field(
        description="The job's SSE stream with the token, for `new EventSource(url)`."
    )


StreamTokenResult = Annotated[
    StreamTokenSuccess | InvalidInputError | NotFoundError | UnauthenticatedError,
    strawberry.union("StreamTokenResult"),
]


def _stream_url(job_id: uuid.UUID, token: str) -> str:
    return f"/events/jobs/{job_id}?token={token}"


@strawberry.type
class LiveMutation:
    @strawberry.mutation(
        description="A short-lived token that opens the SSE stream of one job "
        "(`GET /events/jobs/{jobId}?token=…`) for clients that cannot send headers, such "
        "as the browser's EventSource."
    )
    async def stream_token(self, info: Info, job_id: strawberry.ID) -> StreamTokenResult:
        try:
            job, token, ttl = await resolve.stream_token(info, job_id)
        except DomainError as error:
            result: Any = user_error(error)
            return result
        return StreamTokenSuccess(token=token, expires_in=ttl, url=_stream_url(job, token))
