"""The plain SSE stream `GET /events/jobs/{jobId}` over a real socket (httpx as the client)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
import uuid

import httpx
import pytest
from starlette.applications import Starlette

from models import JobStatus
from services import tokens
from settings import Settings
from subscriptions.connections import SLOW_CONSUMER
from tests.support import sign_up
from tests.test_live_support import (
    SSEMessage,
    append,
    append_run,
    assert_contiguous,
    generate,
    job_row,
    live_of,
    read_sse,
    stream_token,
)
from tests.test_live_support import http as http
from tests.test_live_support import live_server as live_server
from tests.test_live_support import slow_writer as slow_writer


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _collect(
    http: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None, limit: float = 15
) -> tuple[httpx.Response, list[SSEMessage]]:
    async def run() -> tuple[httpx.Response, list[SSEMessage]]:
        async with http.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                return response, []
            return response, [message async for message in read_sse(response)]

    return await asyncio.wait_for(run(), timeout=limit)


def _events(messages: list[SSEMessage]) -> list[dict[str, object]]:
    events = []
    for message in messages:
        if message.data and message.event is None:
            event = json.loads(message.data)
            assert message.id == str(event["seq"])  # `id:` is the sequence number
            events.append(event)
    return events


async def test_a_generation_streams_live_to_its_end(
    http: httpx.AsyncClient, app: Starlette, slow_writer: None
) -> None:
    user = await sign_up(http)
    job_id, course_id = await generate(http, user.token)
    response, messages = await _collect(http, f"/events/jobs/{job_id}", _auth(user.token))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert messages[0].retry == live_of(app).settings.live_sse_retry_ms
    events = _events(messages)
    assert_contiguous([int(str(e["seq"])) for e in events])
    assert events[0]["type"] == "queued" and events[-1]["type"] == "completed"
    assert {e["courseId"] for e in events} == {course_id} and events[-1]["progress"] == 1
    # Resuming after the end: 204 tells EventSource to stop reconnecting.
    last = str(events[-1]["seq"])
    response, _ = await _collect(
        http, f"/events/jobs/{job_id}", {**_auth(user.token), "last-event-id": last}
    )
    assert response.status_code == 204


async def test_it_resumes_from_last_event_id_or_after(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    user = await sign_up(http)
    job = await job_row(user)
    await append_run(app, job, 6, terminal="completed")
    url = f"/events/jobs/{job.id}"
    _, messages = await _collect(http, url, {**_auth(user.token), "last-event-id": "4"})
    assert [e["seq"] for e in _events(messages)] == [5, 6, 7]
    _, messages = await _collect(http, f"{url}?after=2", _auth(user.token))
    assert [e["seq"] for e in _events(messages)] == [3, 4, 5, 6, 7]
    # Last-Event-ID (a reconnect) wins over the `after` of the original URL.
    _, messages = await _collect(
        http, f"{url}?after=2", {**_auth(user.token), "last-event-id": "6"}
    )
    assert [e["seq"] for e in _events(messages)] == [7]
    response, _ = await _collect(http, f"{url}?after=-1", _auth(user.token))
    assert response.status_code == 400


async def test_a_finished_job_with_an_expired_log_still_ends(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    user = await sign_up(http)
    job = await job_row(user, JobStatus.SUCCEEDED, finished_ago=7200)
    _, messages = await _collect(http, f"/events/jobs/{job.id}", _auth(user.token))
    assert [(e["seq"], e["type"]) for e in _events(messages)] == [(1, "completed")]


async def test_who_may_follow(app: Starlette, http: httpx.AsyncClient) -> None:
    owner, stranger = await sign_up(http), await sign_up(http)
    job = await job_row(owner)
    other = await job_row(owner)
    url = f"/events/jobs/{job.id}"
    response, _ = await _collect(http, url)
    assert response.status_code == 401 and response.json()["code"] == "UNAUTHENTICATED"
    response, _ = await _collect(http, url, _auth("not-a-token"))
    assert response.status_code == 401
    # A job of a course the user may not see does not exist, as everywhere in the API.
    response, _ = await _collect(http, url, _auth(stranger.token))
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"
    response, _ = await _collect(http, "/events/jobs/nope", _auth(owner.token))
    assert response.status_code == 404
    assert (await stream_token(http, stranger.token, str(job.id)))["code"] == "NOT_FOUND"
    # A stream token opens the stream of its job only.
    minted = await stream_token(http, owner.token, str(job.id))
    assert minted["__typename"] == "StreamTokenSuccess" and minted["expiresIn"] == 300
    response, _ = await _collect(http, f"/events/jobs/{other.id}?token={minted['token']}")
    assert response.status_code == 401
    await append(app, job, "completed", progress=1.0)
    response, messages = await _collect(http, minted["url"])
    assert response.status_code == 200 and [e["type"] for e in _events(messages)] == ["completed"]


async def test_heartbeats_keep_a_quiet_stream_alive(
    app: Starlette, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_of(app).settings, "live_heartbeat_seconds", 0.2)
    user = await sign_up(http)
    job = await job_row(user)
    await append(app, job, "queued")
    seen: list[SSEMessage] = []

    async def follow() -> None:
        async with http.stream("GET", f"/events/jobs/{job.id}", headers=_auth(user.token)) as r:
            async for message in read_sse(r):
                seen.append(message)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.9)
    await append(app, job, "completed", progress=1.0)
    await asyncio.wait_for(task, timeout=5)
    pings = [m for m in seen if m.comments == ["ping"] and not m.data]
    assert len(pings) >= 3
    assert [e["type"] for e in _events(seen)] == ["queued", "completed"]


async def test_the_server_closes_with_a_reason_and_the_client_resumes(
    app: Starlette, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = live_of(app).registry
    monkeypatch.setattr(
        registry, "limits", dataclasses.replace(registry.limits, sse_max_lifetime_seconds=0.5)
    )
    user = await sign_up(http)
    job = await job_row(user)
    await append_run(app, job, 2)
    url, headers = f"/events/jobs/{job.id}", _auth(user.token)
    _, first = await _collect(http, url, headers)
    close = [m for m in first if m.event == "close"]
    assert json.loads(close[0].data)["reason"] == "lifetime"
    assert [e["seq"] for e in _events(first)] == [1, 2]
    await append_run(app, job, 2, terminal="completed")
    _, second = await _collect(http, url, {**headers, "last-event-id": "2"})
    assert [e["seq"] for e in _events(second)] == [3, 4, 5]


async def test_an_expiring_token_closes_the_stream_saying_so(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    user = await sign_up(http)
    short = tokens.issue_access_token(
        key=live_of(app).settings.signing_key,
        issuer=live_of(app).settings.jwt_issuer,
        audience=live_of(app).settings.jwt_audience,
        user_id=user.id,
        session_id=await _session_of(user.token, live_of(app).settings),
        ttl_seconds=1,
    )
    running = await job_row(user)
    await append(app, running, "started")
    started = time.monotonic()
    _, messages = await _collect(http, f"/events/jobs/{running.id}", _auth(short))
    close = next(m for m in messages if m.event == "close")
    assert json.loads(close.data)["reason"] == "token_expired"
    assert time.monotonic() - started < 3


async def _session_of(token: str, settings: Settings) -> uuid.UUID:
    claims = tokens.decode_access_token(
        token, key=settings.signing_key, issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    return claims.session_id


async def test_a_client_that_stops_reading_is_disconnected(
    app: Starlette, http: httpx.AsyncClient, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = live_of(app)
    monkeypatch.setattr(
        live.registry, "limits", dataclasses.replace(live.registry.limits, send_queue_size=8)
    )
    monkeypatch.setattr(live.settings, "live_send_timeout_seconds", 0.5)
    user = await sign_up(http)
    job = await job_row(user)
    await append(app, job, "queued")
    port = int(live_server.rsplit(":", 1)[1])
    # A client with a tiny receive window that never reads after its request: once the
    # socket buffers are full (a few MB on loopback), the server's writes block.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    request = (
        f"GET /events/jobs/{job.id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {user.token}"
        "\r\nAccept: text/event-stream\r\n\r\n"
    )
    stalled.sendall(request.encode())
    healthy = asyncio.create_task(_collect(http, f"/events/jobs/{job.id}", _auth(user.token), 30))
    try:
        await asyncio.sleep(0.3)
        started = time.monotonic()
        for index in range(400):
            await append(app, job, "topic_done", message=f"{index} " + "x" * 16_000)
            await asyncio.sleep(0.001)  # a steady stream, never a burst beyond the queue
        await append(app, job, "completed", progress=1.0)
        _, messages = await healthy
        # The healthy subscriber got everything, at full speed.
        assert_contiguous([int(str(e["seq"])) for e in _events(messages)])
        assert len(_events(messages)) == 402 and time.monotonic() - started < 10
        assert live.registry.closed_by_reason[SLOW_CONSUMER.code] >= 1
        # Its stream is torn down (the blocked write times out) and its slot is freed.
        for _ in range(50):
            if not any(c.transport == "sse" for c in live.registry.connections.values()):
                break
            await asyncio.sleep(0.1)
        assert not any(c.transport == "sse" for c in live.registry.connections.values())
    finally:
        stalled.close()
