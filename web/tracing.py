"""OpenTelemetry tracing, switched on by `COURSEGEN_TRACING=true`.

A span per HTTP request (opentelemetry-instrumentation-asgi; the health and metrics probes
excepted) and, below it, one per GraphQL operation with its parsing and validation
(Strawberry's OpenTelemetryExtension, without its span per resolved field: a dashboard page
resolves thousands). Both carry the request id (`coursegen.request_id`), as the logs do.

Spans go over OTLP/HTTP as the standard variables say (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, …), unless a
tracer provider was installed already (tests install one with an in-memory exporter).

Off (the default) nothing of this runs and OpenTelemetry is not even imported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from settings import Settings

REQUEST_ID = "coursegen.request_id"
_EXCLUDED = "health/live,health/ready,metrics"


def configure(settings: Settings) -> None:
    """Install the SDK's tracer provider with the OTLP exporter, once per process."""
    if not settings.tracing:
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return  # installed already (an earlier app in this process, or a test)
    name = os.environ.get("OTEL_SERVICE_NAME", "coursegen")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


class TracingMiddleware:
    """A span per HTTP request and WebSocket; added (inside the request id) only when on."""

    def __init__(self, app: ASGIApp) -> None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        self.app = OpenTelemetryMiddleware(
            app, excluded_urls=_EXCLUDED, server_request_hook=_tag_request
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _tag_request(span: Any, scope: dict[str, Any]) -> None:
    request_id = scope.get("state", {}).get("request_id")
    if span is not None and span.is_recording() and request_id:
        span.set_attribute(REQUEST_ID, request_id)


def schema_extensions(settings: Settings) -> list[Any]:
    """The GraphQL operation span (when tracing is on)."""
    if not settings.tracing:
        return []
    from strawberry.extensions import LifecycleStep, SchemaExtension
    from strawberry.extensions.tracing import OpenTelemetryExtension

    class OperationSpans(OpenTelemetryExtension):
        # No span per resolved field: Strawberry's own would add thousands to a page.
        resolve = SchemaExtension.resolve  # type: ignore[assignment]

        def on_operation(self) -> Generator[None, None, None]:
            operation = super().on_operation()
            next(operation)
            request_id = getattr(self.execution_context.context, "request_id", None)
            if request_id:
                self._span_holder[LifecycleStep.OPERATION].set_attribute(REQUEST_ID, request_id)
            yield
            with contextlib.suppress(StopIteration):
                next(operation)

    return [OperationSpans]
