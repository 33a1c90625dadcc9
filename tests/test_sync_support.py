"""Helpers of the sync tests: table clean-up, devices over the in-process ASGI app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tortoise import connections

from settings import Settings
from sync import push as sync_push
from sync.client import SyncReplica

SYNC_TABLES = [
    "sync_rejections",
    "sync_mutation_results",
    "sync_clients",
    "sync_client_groups",
    "sync_entries",
    "sync_scopes",
]


async def clear_sync_tables() -> None:
    sync_push.forget_bindings()
    connection = connections.get("default")
    for table in SYNC_TABLES:
        await connection.execute_query(f"DELETE FROM {table}")  # noqa: S608 -- fixed names


@pytest.fixture
async def sync_tables(settings: Settings) -> AsyncIterator[None]:
    await clear_sync_tables()
    yield
    await clear_sync_tables()


class Wire:
    """A transport with a user's token; logs every response (even ones it then loses)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        token: str,
        log: list[tuple[str, dict[str, Any], dict[str, Any]]] | None = None,
    ) -> None:
        self.client = client
        self.token = token
        # Several wires may share one log: the order in which the server answered.
        self.log: list[tuple[str, dict[str, Any], dict[str, Any]]] = [] if log is None else log
        self.lose_next = 0  # responses to drop (the request was served)

    async def __call__(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(
            path, json=body, headers={"authorization": f"Bearer {self.token}"}
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        self.log.append((path, body, data))
        if self.lose_next:
            self.lose_next -= 1
            raise ConnectionError("response lost")
        return data


def device(client: httpx.AsyncClient, token: str, **options: Any) -> tuple[SyncReplica, Wire]:
    wire = Wire(client, token)
    return SyncReplica(wire, client_group_id=uuid.uuid4().hex, **options), wire


async def raw(
    client: httpx.AsyncClient, token: str, path: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.post(path, json=body, headers={"authorization": f"Bearer {token}"})


def push_body(group: str, *mutations: dict[str, Any]) -> dict[str, Any]:
    return {"protocolVersion": 1, "clientGroupId": group, "mutations": list(mutations)}


def mutation(
    client_id: str,
    mid: int,
    name: str,
    args: dict[str, Any],
    hlc: str | None = None,
    base_version: int | None = None,
) -> dict[str, Any]:
    import time

    return {
        "clientId": client_id,
        "id": mid,
        "name": name,
        "args": args,
        "hlc": hlc or f"{int(time.time() * 1000)}-{mid}-{client_id}",
        "baseVersion": base_version,
    }
