"""The service as a user starts it: a real uvicorn process on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.demo import DEMO_EMAIL, DEMO_PASSWORD
from settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSEGEN_", "DATABASE_URL"))}
    env.pop("SECRET_KEY", None)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=_env(
            COURSEGEN_DATA_DIR=str(tmp_path),
            DATABASE_URL=settings.resolved_database_url,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError("server did not become ready")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
            assert process.stdout is not None
            process.stdout.close()


async def test_demo_account_logs_in_over_real_http(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as http:
        response = await http.post(
            "/graphql",
            json={
                "query": "mutation($i: LogInInput!) { logIn(input: $i) { ... on AuthSuccess { accessToken } } }",
                "variables": {"i": {"email": DEMO_EMAIL, "password": DEMO_PASSWORD}},
            },
            headers={"x-request-id": "trace-me-123"},
        )
        assert response.headers["x-request-id"] == "trace-me-123"
        token = response.json()["data"]["logIn"]["accessToken"]
        response = await http.post(
            "/graphql",
            json={
                "query": "{ courses { totalCount edges { node { status subjects { topics { id } } } } } }"
            },
            headers={"authorization": f"Bearer {token}"},
        )
        courses = response.json()["data"]["courses"]
        assert courses["totalCount"] == 3
        assert {edge["node"]["status"] for edge in courses["edges"]} == {"READY"}
        assert all(edge["node"]["subjects"] for edge in courses["edges"])
        assert len(response.headers["x-request-id"]) == 32  # generated when none is sent


def test_production_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "serve", "--port", str(_free_port())],
        cwd=ROOT,
        env=_env(COURSEGEN_ENV="production", COURSEGEN_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stdout + result.stderr
