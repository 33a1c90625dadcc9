"""The web process as the Procfile runs it (`manage.py serve`): secrets in URLs stay out of every
log line, and WebSocket messages are bounded (1009), by uvicorn and by the app itself."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from settings import Settings
from tests.support import sign_up
from tests.test_live_support import free_port, spawn_web, stop, wait_ready

LIMIT = 4096


async def _oversized_message_closes(base: str, token: str) -> int | None:
    """Sends one message past the limit after a good `connection_init`; the close code."""
    url = base.replace("http", "ws", 1) + "/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"type": "ping", "payload": {"pad": "x" * (LIMIT * 2)}}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), timeout=10)
        return closed.value.rcvd.code if closed.value.rcvd else None


@pytest.mark.parametrize("via_manage", [True, False], ids=["manage-serve", "uvicorn-cli"])
async def test_websocket_messages_past_the_limit_close_with_1009(
    settings: Settings, client: httpx.AsyncClient, tmp_path: Path, via_manage: bool
) -> None:
    port = free_port()
    process = spawn_web(
        settings,
        port,
        redis_url=settings.redis_url,
        extra={"WS_MAX_MESSAGE_BYTES": str(LIMIT)},
        data_dir=tmp_path,
        log_file=tmp_path / "web.log",
        via_manage=via_manage,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, process)
        user = await sign_up(client)
        assert await _oversized_message_closes(base, user.token) == 1009
        # A message under the limit is served as ever.
        url = base.replace("http", "ws", 1) + "/graphql"
        async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": user.token}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"type": "ping", "payload": {"pad": "x" * (LIMIT // 2)}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), timeout=10))["type"] == "pong"
    finally:
        stop(process)


async def test_tokens_in_urls_reach_no_log_line(
    settings: Settings, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    port = free_port()
    log_file = tmp_path / "web.log"
    process = spawn_web(
        settings,
        port,
        redis_url=settings.redis_url,
        data_dir=tmp_path,
        log_file=log_file,
        via_manage=True,  # uvicorn's access log and its WebSocket lines at their INFO level
    )
    base = f"http://127.0.0.1:{port}"
    secrets = ["sse-secret-" + "a" * 24, "ws-secret-" + "b" * 24, "other-secret-" + "c" * 24]
    try:
        await wait_ready(base, process)
        user = await sign_up(client)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            missing = "00000000-0000-0000-0000-000000000000"
            await http.get(f"/events/jobs/{missing}?token={secrets[0]}")
            await http.get(f"/graphql/stream?x=1&access_token={secrets[2]}")
        url = base.replace("http", "ws", 1) + f"/graphql?token={secrets[1]}"
        async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": user.token}}))
            await ws.recv()
        await asyncio.sleep(0.5)  # let the log lines be written
    finally:
        stop(process)
    text = log_file.read_text()
    assert "/events/jobs/" in text and "WebSocket" in text, text[-2000:]  # the lines exist
    for secret in secrets:
        assert secret not in text
    assert "[redacted]" in text
