"""OpenTelemetry tracing behind COURSEGEN_TRACING: a span per HTTP request and per GraphQL
operation with the request id, read back from the SDK's in-memory exporter; nothing when off."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette

from app import create_app
from settings import Settings
from tests.support import ROOT

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """The process's tracer provider (set once), exporting to memory."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    return _EXPORTER


def _sharing_state(traced: Starlette, app: Starlette) -> Starlette:
    """A second app on the running app's runtime (one lifespan per test process)."""
    for name in ("runtime", "live", "draining", "events", "jobs"):
        setattr(traced.state, name, getattr(app.state, name))
    return traced


async def test_spans_per_request_and_operation_carry_the_request_id(
    app: Starlette, settings: Settings, exporter: InMemorySpanExporter
) -> None:
    traced = _sharing_state(create_app(settings.model_copy(update={"tracing": True})), app)
    exporter.clear()
    transport = httpx.ASGITransport(app=traced)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/graphql", json={"query": "query Probe { __typename }"})
        await client.get("/health/live")  # probes are not traced
    assert response.json() == {"data": {"__typename": "Query"}}
    request_id = response.headers["x-request-id"]
    spans = exporter.get_finished_spans()
    operation = next(s for s in spans if s.name == "GraphQL Query: Probe")
    assert operation.attributes is not None
    assert operation.attributes["coursegen.request_id"] == request_id
    server = next(s for s in spans if s.parent is None)
    assert server.attributes is not None
    assert server.attributes["coursegen.request_id"] == request_id
    assert operation.context.trace_id == server.context.trace_id
    assert operation.parent is not None and operation.parent.span_id == server.context.span_id
    assert not any("health" in s.name for s in spans)
    # No span per resolved field.
    assert not any(s.name.startswith("GraphQL Resolving") for s in spans)


async def test_no_spans_when_off(client: httpx.AsyncClient, exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    response = await client.post("/graphql", json={"query": "query Quiet { __typename }"})
    assert response.status_code == 200
    assert exporter.get_finished_spans() == ()


def test_off_by_default_nothing_is_installed() -> None:
    """No tracer provider, no tracing middleware, no operation span extension. (Whether the
    `opentelemetry` API is imported is not ours to say: redis-py imports it when present.)"""
    code = (
        "from opentelemetry import trace; from opentelemetry.sdk.trace import TracerProvider;"
        "from app import create_app; from settings import Settings, Environment;"
        "from web.tracing import TracingMiddleware;"
        "app = create_app(Settings(COURSEGEN_ENV=Environment.TEST));"
        "print(isinstance(trace.get_tracer_provider(), TracerProvider),"
        " any(m.cls is TracingMiddleware for m in app.user_middleware))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSEGEN_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False False"
