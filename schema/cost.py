"""What a GraphQL request may cost: a static price per field, checked after validation and
before any resolver runs, then charged against the caller's budgets. Every response reports
it in `extensions.cost` (as Shopify does): `{requested, actual, remaining, limit}`.

The price list (the numbers live here, below):
- a scalar or enum field costs 0; each object a field returns costs OBJECT_COST (1);
- each root field of a mutation costs MUTATION_COST (10) more: it writes, and `logIn` /
  `signUp` hash a password;
- a list of objects costs its assumed length times the price of one element:
  * the connection `courses(first|last:)` takes `first`/`last` (default 20; at most 100 is
    served) for its `edges` and `nodes`;
  * the other lists take LIST_SIZES, the most the domain makes in practice: 12 subjects and
    12 topics a subject (the caps of a generated course, generation/requests.py), 10 members
    a course and 10 notes a topic; any other list DEFAULT_LIST_SIZE (20);
- FIELD_COSTS adds the price of fields that do extra work (`totalCount` is a SQL count).

Figures: `me { id email }` costs 1; a course page with its syllabus, members and the viewer's
notes (`course(id) { … subjects { … topics { … notes } } }`) 1,762; the 100-course dashboard
(tests/test_dashboard.py) about 176,000, which is why `max_query_cost` is 200,000 and the
budgets are millions a minute: the limit is there for multiplicative abuse (30 aliased
dashboards: 5.3 million), depth and aliases are limited separately.

`actual` is the same sum over what the response holds (real lengths; a null object costs
nothing). Budgets are charged the requested cost (refunds do not exist in `limits`); a request
that does not fit is refused with RATE_LIMITED (HTTP 429 and `Retry-After`) before it runs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
)
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension

from observability import metrics
from services.errors import DomainError, ErrorCode
from settings import Settings

log = logging.getLogger("coursegen.cost")

OBJECT_COST = 1
MUTATION_COST = 10
DEFAULT_LIST_SIZE = 20
CONNECTION_DEFAULT_SIZE = 20
# Fields whose type is a connection: their `edges` / `nodes` are `first` (or `last`) long.
CONNECTIONS = {"Query.courses"}
LIST_SIZES = {
    "Course.subjects": 12,
    "Subject.topics": 12,
    "Course.members": 10,
    "Topic.notes": 10,
}
FIELD_COSTS = {"CourseConnection.totalCount": 2}

_MISSING: Any = object()


class CostCalculator:
    """Prices one operation of a validated document, statically or over its result."""

    def __init__(
        self,
        schema: GraphQLSchema,
        document: Any,
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> None:
        self.schema = schema
        self.variables = variables or {}
        self.operation: OperationDefinitionNode | None = get_operation_ast(document, operation_name)
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self._memo: dict[tuple[int, str, int], int] = {}
        # Boolean defaults of the operation's variables, for @skip/@include.
        self._defaults: dict[str, bool] = {
            d.variable.name.value: d.default_value.value
            for d in (self.operation.variable_definitions if self.operation else ()) or ()
            if isinstance(d.default_value, BooleanValueNode)
        }

    def _root(self) -> GraphQLObjectType | None:
        if self.operation is None:
            return None
        kind = self.operation.operation
        if kind is OperationType.MUTATION:
            return self.schema.mutation_type
        if kind is OperationType.SUBSCRIPTION:
            return self.schema.subscription_type
        return self.schema.query_type

    def requested(self) -> int:
        root = self._root()
        if root is None or self.operation is None:
            return 0
        return self._selection(self.operation.selection_set, root, _MISSING, None)

    def actual(self, data: Any) -> int:
        root = self._root()
        if root is None or self.operation is None or not isinstance(data, dict):
            return 0
        return self._selection(self.operation.selection_set, root, data, None)

    def _selection(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLNamedType,
        data: Any,
        page_size: int | None,
    ) -> int:
        static = data is _MISSING
        if static:
            key = (id(selection_set), parent.name, page_size or 0)
            if key in self._memo:
                return self._memo[key]
        total = 0
        for node in selection_set.selections:
            if not self._included(node):
                continue
            if isinstance(node, FieldNode):
                total += self._field(node, parent, data, page_size)
            elif isinstance(node, InlineFragmentNode):
                condition = (
                    self.schema.get_type(node.type_condition.name.value)
                    if node.type_condition
                    else parent
                )
                if condition is not None:
                    total += self._selection(node.selection_set, condition, data, page_size)
            elif isinstance(node, FragmentSpreadNode):
                fragment = self.fragments.get(node.name.value)
                if fragment is None:
                    continue
                condition = self.schema.get_type(fragment.type_condition.name.value)
                if condition is not None:
                    total += self._selection(fragment.selection_set, condition, data, page_size)
        if static:
            self._memo[key] = total
        return total

    def _included(self, node: SelectionNode) -> bool:
        """False when `@skip(if: true)` or `@include(if: false)` leaves the node out (a
        condition whose value is not known here counts the node in: never under-priced)."""
        for directive in node.directives or ():
            name = directive.name.value
            if name not in ("skip", "include"):
                continue
            argument = next((a for a in directive.arguments or () if a.name.value == "if"), None)
            value = argument.value if argument is not None else None
            flag: Any = None
            if isinstance(value, BooleanValueNode):
                flag = value.value
            elif isinstance(value, VariableNode):
                flag = self.variables.get(value.name.value, self._defaults.get(value.name.value))
            if isinstance(flag, bool) and flag == (name == "skip"):
                return False
        return True

    def _field(
        self, node: FieldNode, parent: GraphQLNamedType, data: Any, page_size: int | None
    ) -> int:
        name = node.name.value
        if name.startswith("__") or not isinstance(
            parent, GraphQLObjectType | GraphQLInterfaceType
        ):
            return 0
        definition = parent.fields.get(name)
        if definition is None:
            return 0
        coordinate = f"{parent.name}.{name}"
        extra = FIELD_COSTS.get(coordinate, 0)
        if parent is self.schema.mutation_type:
            extra += MUTATION_COST
        named = get_named_type(definition.type)
        if is_leaf_type(named) or node.selection_set is None:
            return extra if data is _MISSING or self._present(data, node) else 0
        child_page = self._page_size(definition, node) if coordinate in CONNECTIONS else None
        if data is _MISSING:
            one = OBJECT_COST + self._selection(node.selection_set, named, _MISSING, child_page)
            if is_list_type(get_nullable_type(definition.type)):
                if page_size is not None and name in ("edges", "nodes"):
                    return extra + page_size * one
                return extra + LIST_SIZES.get(coordinate, DEFAULT_LIST_SIZE) * one
            return extra + one
        if not self._present(data, node):
            return 0
        value = data[self._key(node)]
        items = value if isinstance(value, list) else [value]
        return extra + sum(
            OBJECT_COST + self._selection(node.selection_set, named, item, child_page)
            for item in items
            if isinstance(item, dict)
        )

    def _page_size(self, definition: GraphQLField, node: FieldNode) -> int:
        """`first` (or `last`) of a connection field, from a literal, a variable or the
        argument's default; CONNECTION_DEFAULT_SIZE when it is not a number."""
        for name in ("first", "last"):
            value: Any = None
            argument = next((a for a in node.arguments or () if a.name.value == name), None)
            if argument is None:
                declared = definition.args.get(name)
                value = None if declared is None else declared.default_value
            elif isinstance(argument.value, VariableNode):
                value = self.variables.get(argument.value.name.value)
            elif isinstance(argument.value, IntValueNode):
                value = int(argument.value.value)
            if isinstance(value, int) and not isinstance(value, bool):
                return max(value, 0)
        return CONNECTION_DEFAULT_SIZE

    @staticmethod
    def _key(node: FieldNode) -> str:
        return node.alias.value if node.alias else node.name.value

    def _present(self, data: Any, node: FieldNode) -> bool:
        return isinstance(data, dict) and self._key(node) in data


def _client_ip(context: Any) -> str:
    request = getattr(context, "request", None)
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


class QueryCost(SchemaExtension):
    """Refuses an operation above `max_query_cost`, charges the per-user and per-IP budgets
    (RATE_LIMITED + `Retry-After` when spent) and reports `extensions.cost`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.calculator: CostCalculator | None = None
        self.requested_cost: int | None = None
        self.remaining: int | None = None
        self.reported = False
        self.refusal: GraphQLError | None = None

    def _settings(self) -> Settings:
        context_settings = getattr(self.execution_context.context, "settings", None)
        return context_settings if isinstance(context_settings, Settings) else self.settings

    async def on_validate(self) -> AsyncIterator[None]:
        yield
        try:
            await self._price_and_charge()
        except GraphQLError as refusal:
            self.refusal = refusal

    async def on_execute(self) -> AsyncIterator[None]:
        # The refusal is raised here, still before any resolver: Strawberry turns an error
        # raised when execution starts into an error result on every transport, whereas one
        # raised from validation ends a WebSocket or SSE operation with no error at all.
        if self.refusal is not None:
            raise self.refusal
        yield

    async def _price_and_charge(self) -> None:
        execution = self.execution_context
        if execution.pre_execution_errors or execution.graphql_document is None:
            return
        settings = self._settings()
        self.calculator = CostCalculator(
            execution.schema._schema,
            execution.graphql_document,
            execution.variables,
            execution.operation_name,
        )
        requested = self.requested_cost = self.calculator.requested()
        _observe_cost(requested)
        if requested > settings.max_query_cost:
            raise GraphQLError(
                f"This operation costs {requested}, above the limit of "
                f"{settings.max_query_cost}: ask for fewer items (`first`) or fewer fields.",
                extensions={
                    "code": "QUERY_TOO_COSTLY",
                    "cost": requested,
                    "maxCost": settings.max_query_cost,
                },
            )
        await self._charge(settings, max(requested, 1))

    async def _charge(self, settings: Settings, cost: int) -> None:
        context = self.execution_context.context
        limits = getattr(context, "rate_limits", None)
        if limits is None:
            return
        charged = _precharged(context)
        try:
            if charged is not None:  # the fast path charged this request before falling back
                self.remaining = charged.outcome()
                return
            viewer = getattr(context, "viewer", None)
            self.remaining = await charge_budgets(
                limits,
                settings,
                cost,
                viewer.id if viewer is not None else None,
                _client_ip(context),
            )
        except DomainError as error:
            self._refuse(error)

    def _refuse(self, error: DomainError) -> None:
        response: Any = getattr(self.execution_context.context, "response", None)
        if error.code is ErrorCode.RATE_LIMITED and hasattr(response, "status_code"):
            response.status_code = 429
            response.headers["Retry-After"] = str(error.retry_after or 1)
        raise GraphQLError(error.message, extensions=error.extensions) from None

    def get_results(self) -> dict[str, Any]:
        # Strawberry asks again for every event of a subscription: its cost was priced and
        # charged when it started, reported with its first result, and is not recounted per
        # event (pricing each event's data cost a share of WebSocket fan-out's CPU).
        if self.reported:
            return {}
        self.reported = True
        if self.requested_cost is None or self.calculator is None:
            return {}
        result = self.execution_context.result
        data = getattr(result, "data", None)
        actual = self.calculator.actual(data) if data is not None else 0
        if not self._settings().report_query_cost:
            return {}
        return {
            "cost": {
                "requested": self.requested_cost,
                "actual": actual,
                "remaining": self.remaining,
                "limit": self._settings().max_query_cost,
            }
        }


async def charge_budgets(
    limits: Any, settings: Settings, cost: int, user_id: Any | None, ip: str
) -> int | None:
    """Charges the per-user (when logged in) and per-IP budgets; returns what remains of the
    user's (else the IP's) window, or raises RATE_LIMITED."""
    charges = [("cost-ip", settings.cost_rate_ip, ip)]
    if user_id is not None:
        charges.insert(0, ("cost-user", settings.cost_rate_user, str(user_id)))
    remaining: int | None = None
    for action, rate, identifier in charges:
        left = await limits.charge(action, rate, cost, identifier)
        remaining = left if remaining is None else remaining
    return remaining


@dataclass(frozen=True, slots=True)
class PreCharged:
    """What charging gave when another executor (fastpath/) charged a request before handing
    it over: the normal executor reuses it instead of charging the budgets twice."""

    remaining: int | None = None
    refusal: DomainError | None = None

    def outcome(self) -> int | None:
        if self.refusal is not None:
            raise self.refusal
        return self.remaining


PRECHARGED_STATE_KEY = "cost_precharged"


def _precharged(context: Any) -> PreCharged | None:
    request = getattr(context, "request", None)
    state = getattr(request, "scope", {}).get("state") if request is not None else None
    charged = state.get(PRECHARGED_STATE_KEY) if isinstance(state, dict) else None
    return charged if isinstance(charged, PreCharged) else None


def _observe_cost(cost: int) -> None:
    metrics.QUERY_COST.observe(cost)
