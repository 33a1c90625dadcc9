"""The per-operation extensions (schema/observe.py, schema/cost.py) run once per subscription,
not once per event, and the cost limit still applies when a subscription starts."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from schema import cost
from settings import Settings
from tests.support import sign_up
from tests.test_live_support import append_run, job_row
from tests.test_live_support import http as http
from tests.test_live_support import live_server as live_server
from tests.test_live_ws import TRANSPORT_WS, receive, ws

FOLLOW = """
subscription Follow($jobId: ID!) {
  generationProgress(jobId: $jobId) { seq type progress }
}
"""


def _observed(outcome: str = "ok") -> float:
    labels = {"operation": "Follow", "type": "subscription", "outcome": outcome}
    return REGISTRY.get_sample_value("coursegen_graphql_operation_seconds_count", labels) or 0.0


async def _messages(socket: Any, op: str) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = await receive(socket)
        if message.get("id") != op:
            continue
        messages.append(message)
        if message["type"] in ("complete", "error"):
            return messages


async def test_extensions_run_once_per_subscription_not_per_event(
    app: Starlette,
    http: httpx.AsyncClient,
    live_server: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "report_query_cost", True)
    priced = []
    original = cost.CostCalculator.actual

    def counting_actual(self: cost.CostCalculator, data: Any) -> int:
        priced.append(data)
        return original(self, data)

    monkeypatch.setattr(cost.CostCalculator, "actual", counting_actual)
    user = await sign_up(http)
    job = await job_row(user)
    await append_run(app, job, 6, terminal="completed")
    before = _observed()
    async with ws(live_server, TRANSPORT_WS, user.token) as socket:
        assert (await receive(socket))["type"] == "connection_ack"
        payload = {"query": FOLLOW, "variables": {"jobId": str(job.id)}}
        await socket.send(json.dumps({"id": "f", "type": "subscribe", "payload": payload}))
        messages = await _messages(socket, "f")
    events = [m["payload"] for m in messages if m["type"] == "next"]
    assert [e["data"]["generationProgress"]["seq"] for e in events] == list(range(1, 8))
    # One observation and one pricing for seven events; the cost report comes with the first.
    assert _observed() - before == 1
    assert len(priced) == 1
    assert "cost" in events[0].get("extensions", {})
    assert all("extensions" not in e or "cost" not in e["extensions"] for e in events[1:])


async def test_the_cost_limit_still_refuses_a_subscription_at_start(
    app: Starlette,
    http: httpx.AsyncClient,
    live_server: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = await sign_up(http)
    job = await job_row(user)
    await append_run(app, job, 2, terminal="completed")
    monkeypatch.setattr(settings, "max_query_cost", 0)  # the subscription costs 1
    async with ws(live_server, TRANSPORT_WS, user.token) as socket:
        assert (await receive(socket))["type"] == "connection_ack"
        payload = {"query": FOLLOW, "variables": {"jobId": str(job.id)}}
        await socket.send(json.dumps({"id": "f", "type": "subscribe", "payload": payload}))
        messages = await _messages(socket, "f")
    refusals = [m for m in messages if m["type"] in ("error", "next")]
    errors = refusals[0]["payload"]
    errors = errors if isinstance(errors, list) else errors.get("errors", [])
    assert errors[0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert not any(m["type"] == "next" and m["payload"].get("data") for m in messages)
