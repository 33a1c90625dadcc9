"""The fast path of `POST /graphql`: a learned query is answered without graphql-core's
executor; everything else, and every request that would end in an error, goes on to the
normal executor untouched.

Per request: the JSON body, the cached plan of its document (learned after the normal
executor validated it once), the viewer from the access token (the same check as every
request), variables and arguments coerced by graphql-core, the cost priced by the same
calculator and charged against the same budgets, then a few keyed SQL statements
(services/tree_reads.py) and the response rendered straight to JSON bytes with orjson.

The normal executor takes over, as if the fast path did not exist, whenever the answer would
hold an error or anything the fast path does not render: no token or a refused one, variables
or arguments that do not coerce, an argument the services refuse (`first` out of range, a
bad cursor, a malformed id), a cost above the limit, a search filter, an unexpected failure
(logged). When the budgets were already charged, the normal executor reuses that charge
(schema/cost.py `PreCharged`), so a request is never charged twice, and a refusal is
reported by it in its own words.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import orjson
from graphql import DocumentNode, GraphQLError, GraphQLSchema, OperationDefinitionNode
from graphql.execution.values import get_variable_values
from starlette.requests import Request
from starlette.responses import Response
from tortoise import connections

from fastpath.codegen import Renderers
from fastpath.compile import Compiled, compile_request
from fastpath.execute import Execution, check_arguments, enum_names, render_namespace
from fastpath.plan import Plan, PlanCache, Unsupported, plan_document
from observability import metrics
from replicas import routing
from resolvers.context import authenticate, bearer_token
from schema.cost import PRECHARGED_STATE_KEY, CostCalculator, PreCharged, charge_budgets
from schema.observe import operation_label
from services import accounts, tree_reads
from services.errors import DomainError
from settings import Settings
from web.persisted_queries import PersistedQueries, PersistedQueryError, resolve_document

log = logging.getLogger("coursegen.fastpath")

PLAN_CACHE_SIZE = 512
PREPARED_PER_PLAN = 64


class FastPath:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.graphql_fast_path
        # Whether learned documents are served (tests turn it off to ask the normal executor).
        self.serving = True
        self.plans = PlanCache(PLAN_CACHE_SIZE)
        self.schema: GraphQLSchema | None = None
        self.renderers = Renderers({})
        self._database_ok: bool | None = None
        # Requests served, and requests handed to the normal executor, by reason.
        self.stats: Counter[str] = Counter()

    # -- learning -------------------------------------------------------------------------

    def learn(
        self,
        schema: GraphQLSchema,
        query: str | None,
        operation_name: str | None,
        document: DocumentNode | None,
    ) -> None:
        """Called after the normal executor validated `document` without errors."""
        if not self.enabled or query is None or document is None:
            return
        known, _ = self.plans.get(query, operation_name)
        if known:
            return
        if self.schema is None:
            self.schema = schema
            self.renderers = Renderers(render_namespace(enum_names(schema)))
        plan = plan_document(schema, document, operation_name)
        self.plans.put(query, operation_name, plan)
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) == 1:  # clients may leave out the name of a single operation
            self.plans.put(query, None, plan)

    # -- serving --------------------------------------------------------------------------

    def _database_supported(self) -> bool:
        if self._database_ok is None:
            self._database_ok = tree_reads.supports(connections.get("default"))
        return self._database_ok

    async def handle(
        self, request: Request, body: bytes, documents: PersistedQueries | None = None
    ) -> Response | None:
        """The response, or None to let the normal executor answer. `documents`: the view's
        persisted queries (APQ), through which a request may name its document by hash."""
        if not self.serving or self.schema is None or not self._database_supported():
            return None
        started = time.perf_counter()
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        query, operation_name = payload.get("query"), payload.get("operationName")
        extensions = payload.get("extensions")
        if extensions:
            if (
                documents is None
                or not isinstance(extensions, dict)
                or set(extensions) != {"persistedQuery"}
            ):
                return None
            try:
                query = await resolve_document(
                    query if isinstance(query, str) else None,
                    extensions,
                    store=documents.store,
                    trusted=documents.trusted,
                    max_tokens=documents.max_tokens,
                    admit=documents.admission(getattr(request.client, "host", None) or "unknown"),
                )
            except PersistedQueryError:
                return None  # the normal executor answers it (e.g. PersistedQueryNotFound)
        raw_variables = payload.get("variables")
        if not isinstance(query, str) or not isinstance(operation_name, str | None):
            return None
        if not isinstance(raw_variables, dict | None):
            return None
        known, plan = self.plans.get(query, operation_name)
        if plan is None:
            self._count("not_learned" if not known else "not_supported")
            return None
        try:
            return await self._serve(request, plan, raw_variables or {}, started)
        except Unsupported as reason:
            self._count(reason.args[0] if reason.args else "unsupported")
            return None

    def _count(self, outcome: str) -> None:
        self.stats[outcome] += 1
        metrics.FAST_PATH.labels(outcome).inc()

    async def _serve(
        self, request: Request, plan: Plan, raw_variables: dict[str, Any], started: float
    ) -> Response | None:
        schema = self.schema
        assert schema is not None
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise Unsupported("no token")
        # Everything that needs no SQL first: a request handed over costs nothing twice.
        compiled, calculator, requested = self._prepare(schema, plan, raw_variables)
        state = request.scope.setdefault("state", {})
        request_id = state.get("request_id") or ""
        authenticated = await authenticate(self.settings, token, request_id, state)
        viewer = authenticated.viewer
        if viewer is None:
            raise Unsupported("token refused")
        metrics.QUERY_COST.observe(requested)
        remaining = await self._charge(request, viewer, max(requested, 1))
        try:
            # Learned documents are dashboard and course-page queries: read from a replica.
            async with routing.reads(viewer.id), tree_reads.reader() as reader:
                execution = Execution(reader, viewer, self.renderers)
                data = await execution.run(compiled.fields)
            body = self._body(data, execution, compiled, calculator, requested, remaining)
        except Unsupported:
            raise
        except DomainError:
            raise Unsupported("refused") from None  # the services' words, from the normal path
        except Exception:
            log.warning(
                "fast path failed; the normal executor answers",
                exc_info=True,
                extra={"request_id": request_id},
            )
            raise Unsupported("error") from None
        self._observe(request, plan, viewer, time.perf_counter() - started)
        self._count("served")
        return Response(body, media_type="application/json")

    def _prepare(
        self, schema: GraphQLSchema, plan: Plan, raw_variables: dict[str, Any]
    ) -> tuple[Compiled, CostCalculator, int]:
        """The request's field tree and its price, the same for the same document and
        variables: kept on the plan for the next request that sends them (a dashboard sends
        none). Only what passed every check is kept."""
        try:
            key: bytes | None = orjson.dumps(raw_variables, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            key = None  # variables orjson cannot write: not kept
        prepared = plan.prepared.get(key) if key is not None else None
        if prepared is None:
            variables = get_variable_values(
                schema, plan.operation.variable_definitions or (), raw_variables
            )
            if isinstance(variables, list):
                raise Unsupported("variables")
            try:
                compiled = compile_request(schema, plan, variables)
            except GraphQLError:
                raise Unsupported("arguments") from None
            check_arguments(compiled.fields)
            calculator = CostCalculator(schema, plan.document, raw_variables, plan.operation_name)
            prepared = (compiled, calculator, calculator.requested())
            if key is not None:
                if len(plan.prepared) >= PREPARED_PER_PLAN:
                    plan.prepared.clear()
                plan.prepared[key] = prepared
        if prepared[2] > self.settings.max_query_cost:
            raise Unsupported("cost")
        return prepared

    def _body(
        self,
        data: dict[str, Any],
        execution: Execution,
        compiled: Compiled,
        calculator: CostCalculator,
        requested: int,
        remaining: int | None,
    ) -> bytes:
        if not self.settings.report_query_cost:
            return orjson.dumps({"data": data})
        if compiled.one_node_per_key:
            actual = execution.objects + 2 * execution.count_fields
        else:
            # Merged or conditional fields: priced as the calculator prices them, over the
            # response as a client reads it (topics arrive from PostgreSQL as JSON text).
            actual = calculator.actual(orjson.loads(orjson.dumps(data)))
        cost = {
            "requested": requested,
            "actual": actual,
            "remaining": remaining,
            "limit": self.settings.max_query_cost,
        }
        return orjson.dumps({"data": data, "extensions": {"cost": cost}})

    async def _charge(self, request: Request, viewer: accounts.Viewer, cost: int) -> int | None:
        limits = getattr(request.app.state.runtime, "rate_limits", None)
        if limits is None:
            return None
        client = request.client
        state = request.scope.setdefault("state", {})
        try:
            remaining = await charge_budgets(
                limits, self.settings, cost, viewer.id, client.host if client else "unknown"
            )
        except DomainError as refusal:
            state[PRECHARGED_STATE_KEY] = PreCharged(refusal=refusal)
            raise Unsupported("rate limited") from None
        state[PRECHARGED_STATE_KEY] = PreCharged(remaining=remaining)
        return remaining

    @staticmethod
    def _observe(request: Request, plan: Plan, viewer: accounts.Viewer, elapsed: float) -> None:
        """What ObserveOperation records for the normal executor: metrics and the access log's
        operation fields."""
        name = plan.operation_name or (plan.operation.name.value if plan.operation.name else None)
        metrics.GRAPHQL_OPERATIONS.labels(operation_label(name), "query", "ok").observe(elapsed)
        state = request.scope.setdefault("state", {})
        state["graphql"] = {
            "operation": name,
            "operation_type": "query",
            "outcome": "ok",
            "error_codes": [],
        }
        state["user_id"] = str(viewer.id)
