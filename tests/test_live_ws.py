"""GraphQL subscriptions over WebSocket (both subprotocols), driven with a raw `websockets`
client so every frame and close code is visible."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services import tokens
from tests.support import gql, sign_up
from tests.test_live_support import (
    SUBSCRIPTION,
    append,
    append_run,
    assert_contiguous,
    generate,
    job_row,
    live_of,
)
from tests.test_live_support import http as http
from tests.test_live_support import live_server as live_server
from tests.test_live_support import slow_writer as slow_writer

TRANSPORT_WS, LEGACY_WS = "graphql-transport-ws", "graphql-ws"


@asynccontextmanager
async def ws(
    base: str,
    protocol: str = TRANSPORT_WS,
    token: str | None = None,
    *,
    header_token: str | None = None,
    init: bool = True,
) -> AsyncIterator[ClientConnection]:
    headers = {"Authorization": f"Bearer {header_token}"} if header_token else None
    url = base.replace("http", "ws", 1) + "/graphql"
    async with connect(url, subprotocols=[protocol], additional_headers=headers) as socket:  # type: ignore[list-item]
        if init:
            payload = {"authorization": f"Bearer {token}"} if token else {}
            await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        yield socket


async def receive(socket: ClientConnection, limit: float = 10) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), timeout=limit))
    return message


async def closed(socket: ClientConnection, limit: float = 10) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    try:
        while True:
            await asyncio.wait_for(socket.recv(), timeout=limit)
    except ConnectionClosed as closing:
        assert closing.rcvd is not None
        return closing.rcvd.code, closing.rcvd.reason
    raise AssertionError("not closed")


async def subscribe(
    socket: ClientConnection, protocol: str, op: str, variables: dict[str, Any], query: str = ""
) -> None:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    payload = {"query": query or SUBSCRIPTION, "variables": variables}
    await socket.send(json.dumps({"id": op, "type": kind, "payload": payload}))


async def events_until_complete(socket: ClientConnection, op: str) -> list[dict[str, Any]]:
    events = []
    while True:
        message = await receive(socket)
        if message.get("id") != op:
            continue
        if message["type"] in ("next", "data"):
            assert "errors" not in message["payload"], message
            events.append(message["payload"]["data"]["generationProgress"])
        elif message["type"] == "complete":
            return events
        else:
            raise AssertionError(message)


def _view(app: Starlette) -> Any:
    return next(r.endpoint for r in app.routes if isinstance(r, WebSocketRoute))


async def test_a_generation_streams_over_graphql_transport_ws(
    http: httpx.AsyncClient, live_server: str, slow_writer: None
) -> None:
    user = await sign_up(http)
    job_id, course_id = await generate(http, user.token)
    async with ws(live_server, TRANSPORT_WS, user.token) as socket:
        assert (await receive(socket))["type"] == "connection_ack"
        await socket.send(
            json.dumps({"id": "q", "type": "subscribe", "payload": {"query": "{ me { email } }"}})
        )
        assert (await receive(socket))["payload"]["data"]["me"]["email"] == user.email
        await subscribe(socket, TRANSPORT_WS, "1", {"jobId": job_id})
        events = await events_until_complete(socket, "1")
    assert_contiguous([e["seq"] for e in events])
    assert events[0]["type"] == "queued" and events[-1]["type"] == "completed"
    assert {e["courseId"] for e in events} == {course_id} and events[-1]["progress"] == 1


async def test_the_legacy_graphql_ws_protocol_resumes_after(
    app: Starlette, http: httpx.AsyncClient, live_server: str
) -> None:
    user = await sign_up(http)
    job = await job_row(user)
    await append_run(app, job, 4)
    async with ws(live_server, LEGACY_WS, header_token=user.token) as socket:
        assert (await receive(socket))["type"] == "connection_ack"
        await subscribe(socket, LEGACY_WS, "7", {"jobId": str(job.id), "after": 2})
        first = [(await receive(socket))["payload"]["data"]["generationProgress"] for _ in range(2)]
        await append(app, job, "failed", message="No model answered.", data={"code": "X"})
        rest = await events_until_complete(socket, "7")
    assert [e["seq"] for e in first + rest] == [3, 4, 5]
    assert rest[-1]["type"] == "failed" and rest[-1]["data"] == {"code": "X"}


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_connections_must_authenticate(
    http: httpx.AsyncClient, live_server: str, protocol: str
) -> None:
    async with ws(live_server, protocol) as socket:
        assert await closed(socket) == (
            4401,
            'Send an access token: connection_init payload {"authorization": "Bearer <token>"} '
            "or the Authorization header.",
        )
    async with ws(live_server, protocol, "forged") as socket:
        code, reason = await closed(socket)
        assert (code, reason) == (4403, "The access token is not valid.")


async def test_a_job_you_may_not_see_is_not_found(
    http: httpx.AsyncClient, live_server: str
) -> None:
    owner, stranger = await sign_up(http), await sign_up(http)
    job = await job_row(owner)
    async with ws(live_server, TRANSPORT_WS, stranger.token) as socket:
        await receive(socket)
        await subscribe(socket, TRANSPORT_WS, "1", {"jobId": str(job.id)})
        error = await receive(socket)
        assert error["type"] == "error"
        assert error["payload"][0]["extensions"]["code"] == "NOT_FOUND"
        await subscribe(socket, TRANSPORT_WS, "2", {"jobId": "not-an-id"})
        assert (await receive(socket))["payload"][0]["extensions"]["code"] == "INVALID_INPUT"


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_connection_init_must_come_in_time(
    app: Starlette, live_server: str, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_view(app), "connection_init_wait_timeout", timedelta(seconds=0.3))
    monkeypatch.setattr(live_of(app).settings, "live_connection_init_timeout_seconds", 0.3)
    async with ws(live_server, protocol, init=False) as socket:
        assert await closed(socket, limit=3) == (4408, "Connection initialisation timeout")


async def test_limits_of_subscriptions_and_connections(
    app: Starlette, http: httpx.AsyncClient, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = live_of(app).registry
    limits = dataclasses.replace(
        registry.limits, max_subscriptions_per_connection=2, max_connections_per_user=2
    )
    monkeypatch.setattr(registry, "limits", limits)
    monkeypatch.setattr(_view(app), "max_subscriptions_per_connection", 2)
    user = await sign_up(http)
    job = await job_row(user)
    async with ws(live_server, TRANSPORT_WS, user.token) as first:
        await receive(first)
        for op in ("1", "2", "3"):
            await subscribe(first, TRANSPORT_WS, op, {"jobId": str(job.id)})
        refused = await receive(first)
        assert refused["id"] == "3" and refused["type"] == "error"
        assert "limit" in refused["payload"][0]["message"]
        async with ws(live_server, TRANSPORT_WS, user.token) as second:
            assert (await receive(second))["type"] == "connection_ack"
            async with ws(live_server, LEGACY_WS, user.token) as third:
                assert (await receive(third))["type"] == "connection_error"
                code, reason = await closed(third)
                assert code == 1008 and "Too many live connections" in reason


async def test_an_expiring_token_or_ended_session_closes_the_socket(
    app: Starlette, http: httpx.AsyncClient, live_server: str
) -> None:
    user = await sign_up(http)
    settings = live_of(app).settings
    claims = tokens.decode_access_token(
        user.token,
        key=settings.signing_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    short = tokens.issue_access_token(
        key=settings.signing_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        user_id=user.id,
        session_id=claims.session_id,
        ttl_seconds=1,
    )
    job = await job_row(user)
    async with ws(live_server, TRANSPORT_WS, short) as socket:
        # On a loaded machine the second may be over before the ack: the close is the same.
        with suppress(ConnectionClosed):
            await receive(socket)
            await subscribe(socket, TRANSPORT_WS, "1", {"jobId": str(job.id)})
        assert await closed(socket, limit=5) == (
            4403,
            "The access token has expired; reconnect with a fresh token.",
        )
    async with ws(live_server, LEGACY_WS, user.token) as socket:
        await receive(socket)
        await gql(http, "mutation { logOut { __typename } }", token=user.token)
        await live_of(app).registry._close_ended_sessions()  # the periodic check, run now
        assert await closed(socket) == (4403, "The session has ended; log in again.")


async def test_subscribers_share_an_event_yet_get_their_own_selection(
    app: Starlette, http: httpx.AsyncClient, live_server: str
) -> None:
    # One execution per event serves every subscriber asking the same selection; others differ.
    user = await sign_up(http)
    job = await job_row(user)
    narrow = "subscription($jobId: ID!) { generationProgress(jobId: $jobId) { seq } }"
    directed = (
        "subscription($jobId: ID!, $t: Boolean!) { generationProgress(jobId: $jobId) "
        "{ seq type @include(if: $t) } }"
    )
    async with ws(live_server, TRANSPORT_WS, user.token) as socket:
        await receive(socket)
        await subscribe(socket, TRANSPORT_WS, "full", {"jobId": str(job.id)})
        await subscribe(socket, TRANSPORT_WS, "narrow", {"jobId": str(job.id)}, narrow)
        await subscribe(socket, TRANSPORT_WS, "on", {"jobId": str(job.id), "t": True}, directed)
        await subscribe(socket, TRANSPORT_WS, "off", {"jobId": str(job.id), "t": False}, directed)
        await asyncio.sleep(0.2)
        await append(app, job, "started")
        got: dict[str, dict[str, Any]] = {}
        while len(got) < 4:
            message = await receive(socket)
            got[message["id"]] = message["payload"]["data"]["generationProgress"]
    assert got["narrow"] == {"seq": 1} and got["off"] == {"seq": 1}
    assert got["on"] == {"seq": 1, "type": "started"}
    assert got["full"]["type"] == "started" and got["full"]["jobId"] == str(job.id)
