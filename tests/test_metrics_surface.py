"""`/metrics` as an operator exposes it: bounded operation labels, an optional token or a
private port, and scrapes that never reach Redis."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from app import create_app
from schema import observe
from settings import Settings
from tests.servers import free_port
from web import metrics


def _operation_labels() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        if family.name == "coursegen_graphql_operation_seconds":
            names |= {sample.labels["operation"] for sample in family.samples}
    return names


async def test_client_chosen_operation_names_are_bounded(client: httpx.AsyncClient) -> None:
    observe.configure_labels([], 3)
    try:
        before = _operation_labels()
        names = [f"Probe{i}" for i in range(10)]
        for name in names:
            await client.post("/graphql", json={"query": f"query {name} {{ __typename }}"})
        seen = _operation_labels() - before
        assert seen == {"Probe0", "Probe1", "Probe2", "other"}, seen
        observe.configure_labels(["Known"], 100)  # a list of known names: only those
        await client.post("/graphql", json={"query": "query Known { __typename }"})
        await client.post("/graphql", json={"query": "query Unlisted { __typename }"})
        assert "Known" in _operation_labels() and "Unlisted" not in _operation_labels()
    finally:
        observe.configure_labels([], 100)


async def test_a_scrape_never_calls_redis(
    client: httpx.AsyncClient, app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    async def queue_depth(_jobs: object) -> dict[str, int]:
        calls.append("queue depth")
        return {"free": 0}

    async def model_health(_writer: object) -> list[object]:
        calls.append("breakers")
        return []

    monkeypatch.setattr(metrics.queue_status, "waiting_by_tier", queue_depth)
    monkeypatch.setattr(metrics.operations, "model_health", model_health)
    for _ in range(5):
        response = await client.get("/metrics")
        assert response.status_code == 200 and "coursegen_job_queue_depth" in response.text
    assert calls == []  # shared gauges come from the background refresher only
    await metrics.refresh_shared_gauges(app.state.runtime)
    assert calls == ["queue depth", "breakers"]


async def test_a_metrics_token_guards_the_endpoint(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": "scrape-secret"}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        refused = await http.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "UNAUTHENTICATED"
        wrong = await http.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        served = await http.get("/metrics", headers={"authorization": "Bearer scrape-secret"})
        assert served.status_code == 200 and "coursegen_http_request_seconds" in served.text


async def test_metrics_can_live_on_a_private_port(settings: Settings) -> None:
    port = free_port()
    app = create_app(settings.model_copy(update={"metrics_port": port}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        public = await http.get("/metrics")
        assert public.status_code == 404 and public.json()["error"]["code"] == "NOT_FOUND"
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(50):
            try:
                private = await http.get(f"http://127.0.0.1:{port}/metrics")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        assert private.status_code == 200 and "coursegen_http_request_seconds" in private.text
