"""The graphql-sse protocol, both modes, frame by frame over a real socket (httpx)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.support import sign_up
from tests.test_live_support import (
    SUBSCRIPTION,
    SSEMessage,
    append,
    append_run,
    assert_contiguous,
    job_row,
    live_of,
    read_sse,
)
from tests.test_live_support import http as http
from tests.test_live_support import live_server as live_server

TOKEN = "x-graphql-event-stream-token"


def _headers(token: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **extra}


async def _distinct(
    http: httpx.AsyncClient, path: str, token: str, body: dict[str, Any]
) -> list[SSEMessage]:
    headers = _headers(token, accept="text/event-stream")
    async with http.stream("POST", path, json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [m async for m in read_sse(response) if m.event]


@pytest.mark.parametrize("path", ["/graphql/stream", "/graphql"])
async def test_distinct_connections_mode(
    app: Starlette, http: httpx.AsyncClient, path: str
) -> None:
    user = await sign_up(http)
    job = await job_row(user)
    await append_run(app, job, 3, terminal="completed")
    body = {"query": SUBSCRIPTION, "variables": {"jobId": str(job.id), "after": 1}}
    messages = await _distinct(http, path, user.token, body)
    assert [m.event for m in messages] == ["next"] * 3 + ["complete"]
    events = [json.loads(m.data)["data"]["generationProgress"] for m in messages[:-1]]
    assert_contiguous([e["seq"] for e in events], first=2)
    assert messages[-1].data == ""
    # Queries run too; validation errors arrive in the stream, not as a 400.
    messages = await _distinct(http, path, user.token, {"query": "{ me { email } }"})
    assert json.loads(messages[0].data)["data"]["me"]["email"] == user.email
    messages = await _distinct(http, path, user.token, {"query": "subscription { nope }"})
    assert "nope" in json.loads(messages[0].data)["errors"][0]["message"]
    assert [m.event for m in messages] == ["next", "complete"]


async def test_distinct_mode_refusals(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/graphql/stream", json={"query": SUBSCRIPTION}, headers={"accept": "text/event-stream"}
    )
    assert response.status_code == 401
    user = await sign_up(http)
    response = await http.post(
        "/graphql/stream", content=b"{", headers=_headers(user.token, accept="text/event-stream")
    )
    assert response.status_code == 400


@dataclasses.dataclass
class _Single:
    http: httpx.AsyncClient
    token: str
    reservation: str
    messages: asyncio.Queue[SSEMessage]

    async def operation(self, op: str, variables: dict[str, Any], query: str = SUBSCRIPTION) -> int:
        body = {"query": query, "variables": variables, "extensions": {"operationId": op}}
        response = await self.http.post(
            "/graphql/stream", json=body, headers={TOKEN: self.reservation}
        )
        return response.status_code

    async def next(self) -> SSEMessage:
        while True:
            message = await asyncio.wait_for(self.messages.get(), timeout=10)
            if message.event:
                return message


async def _open(http: httpx.AsyncClient, token: str) -> AsyncIterator[_Single]:
    response = await http.put("/graphql/stream", headers=_headers(token))
    assert response.status_code == 201 and response.headers["content-type"].startswith("text/plain")
    single = _Single(http, token, response.text, asyncio.Queue())
    opened = asyncio.Event()

    async def listen() -> None:
        headers = {TOKEN: single.reservation, "accept": "text/event-stream"}
        async with http.stream("GET", "/graphql/stream", headers=headers) as stream:
            assert stream.status_code == 200
            opened.set()
            async for message in read_sse(stream):
                await single.messages.put(message)
        await single.messages.put(SSEMessage(event="end"))

    task = asyncio.create_task(listen())
    await asyncio.wait_for(opened.wait(), timeout=5)
    try:
        yield single
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_single_connection_mode(app: Starlette, http: httpx.AsyncClient) -> None:
    user = await sign_up(http)
    first, second = await job_row(user), await job_row(user)
    await append_run(app, first, 2)
    async for single in _open(http, user.token):
        # One stream per reservation.
        again = await http.get(
            "/graphql/stream", headers={TOKEN: single.reservation, "accept": "text/event-stream"}
        )
        assert again.status_code == 409
        assert await single.operation("a", {"jobId": str(first.id)}) == 202
        assert await single.operation("b", {"jobId": str(second.id)}) == 202
        assert await single.operation("a", {"jobId": str(first.id)}) == 409
        got = [json.loads((await single.next()).data) for _ in range(2)]
        assert [(g["id"], g["payload"]["data"]["generationProgress"]["seq"]) for g in got] == [
            ("a", 1),
            ("a", 2),
        ]
        await append(app, second, "started")
        message = await single.next()
        assert message.event == "next" and json.loads(message.data)["id"] == "b"
        # DELETE stops an operation; the other goes on to its end.
        stopped = await http.delete(
            "/graphql/stream?operationId=b", headers={TOKEN: single.reservation}
        )
        assert stopped.status_code == 200
        await append(app, second, "topic_done")
        await append(app, first, "completed", progress=1.0)
        message = await single.next()
        assert json.loads(message.data)["id"] == "a"
        assert json.loads(message.data)["payload"]["data"]["generationProgress"]["seq"] == 3
        complete = await single.next()
        assert (complete.event, json.loads(complete.data)) == ("complete", {"id": "a"})
        # Bad requests are answered at once, as GraphQL over HTTP says.
        assert await single.operation("c", {}, query="subscription { nope }") == 400
        bad = await http.post(
            "/graphql/stream", json={"query": SUBSCRIPTION}, headers={TOKEN: single.reservation}
        )
        assert bad.status_code == 400  # no operation id
        while not single.messages.empty():  # nothing for the stopped operation `b`
            late = single.messages.get_nowait()
            assert not late.data or json.loads(late.data).get("id") != "b"


async def test_single_connection_refusals(http: httpx.AsyncClient) -> None:
    assert (await http.put("/graphql/stream")).status_code == 401
    unknown = {TOKEN: "nope"}
    assert (
        await http.post("/graphql/stream", json={"query": "{ me { id } }"}, headers=unknown)
    ).status_code == 404
    assert (await http.delete("/graphql/stream?operationId=x", headers=unknown)).status_code == 404
    stream = await http.get("/graphql/stream", headers={**unknown, "accept": "text/event-stream"})
    assert stream.status_code == 404


async def test_a_stream_at_its_end_of_life_leaves_operations_open(
    app: Starlette, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = live_of(app).registry
    monkeypatch.setattr(
        registry, "limits", dataclasses.replace(registry.limits, sse_max_lifetime_seconds=0.5)
    )
    user = await sign_up(http)
    job = await job_row(user)
    await append_run(app, job, 1)
    async for single in _open(http, user.token):
        assert await single.operation("a", {"jobId": str(job.id)}) == 202
        assert json.loads((await single.next()).data)["id"] == "a"
        end: list[SSEMessage] = []
        while not end or end[-1].event != "end":
            end.append(await asyncio.wait_for(single.messages.get(), timeout=5))
        # No `complete`: the client reconnects and subscribes again.
        assert not [m for m in end if m.event == "complete"]
        assert any("closed (lifetime)" in c for m in end for c in m.comments)
