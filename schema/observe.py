"""Per-operation observations: latency and error-code metrics, and what the access log says
about the operation (name, type, user, outcome, error codes), handed over in the ASGI scope."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from observability import metrics
from services.errors import DomainError


def error_code(error: GraphQLError) -> str:
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    original = error.original_error
    if original is not None and not isinstance(original, DomainError | GraphQLError):
        return "INTERNAL_SERVER_ERROR"
    if error.message.startswith("Unexpected error"):
        return "INTERNAL_SERVER_ERROR"
    return "GRAPHQL_VALIDATION_FAILED"


class OperationLabels:
    """Bounds the `operation` label: clients choose operation names, and every new label
    value is a new time series held forever by this process and by Prometheus. With a list of
    known names only those are labels; otherwise the first `limit` distinct names are (a
    deployment's own clients send a few dozen), and every other name is `other`."""

    def __init__(self, known: list[str] | None = None, limit: int = 100) -> None:
        self.strict = bool(known)
        self.names: set[str] = set(known or ())
        self.limit = limit

    def label(self, name: str | None) -> str:
        if not name:
            return "anonymous"
        if name in self.names:
            return name
        if self.strict or len(self.names) >= self.limit or len(name) > 64:
            return "other"
        self.names.add(name)
        return name


_labels = OperationLabels()


def configure_labels(known: list[str], limit: int) -> None:
    global _labels
    _labels = OperationLabels(known, limit)


def operation_label(name: str | None) -> str:
    return _labels.label(name)


class ObserveOperation(SchemaExtension):
    """Observes an operation once. A subscription is observed at its first result (an event
    or its refusal), its latency being the time to that result: Strawberry calls
    `get_results` again for every event, which would count one operation per event and
    cost CPU on every delivery of a fan-out."""

    started: float = 0.0
    observed: bool = False

    def on_operation(self) -> Iterator[None]:
        self.started = time.perf_counter()
        yield

    def get_results(self) -> dict[str, Any]:
        if self.observed:
            return {}
        self.observed = True
        execution = self.execution_context
        elapsed = time.perf_counter() - (self.started or time.perf_counter())
        result = execution.result
        errors = list(getattr(result, "errors", None) or execution.pre_execution_errors or [])
        codes = sorted({error_code(error) for error in errors})
        data = getattr(result, "data", None)
        outcome = "ok" if not errors else ("partial" if data else "error")
        try:
            kind = execution.operation_type.value
        except Exception:  # an unparsable document has no operation type
            kind = "unknown"
        name = operation_label(execution.operation_name)
        metrics.GRAPHQL_OPERATIONS.labels(name, kind, outcome).observe(elapsed)
        for code in codes:
            metrics.GRAPHQL_ERRORS.labels(code).inc()
            if code in _LIMIT_CODES:
                metrics.LIMIT_REFUSALS.labels(_LIMIT_CODES[code]).inc()
        context = execution.context
        request = getattr(context, "request", None)
        state = getattr(request, "scope", {}).get("state") if request is not None else None
        if isinstance(state, dict):
            viewer = getattr(context, "viewer", None)
            state["graphql"] = {
                "operation": execution.operation_name,
                "operation_type": kind,
                "outcome": outcome,
                "error_codes": codes,
            }
            if viewer is not None:
                state["user_id"] = str(viewer.id)
        return {}


_LIMIT_CODES = {"QUERY_TOO_COSTLY": "cost", "RATE_LIMITED": "rate"}
