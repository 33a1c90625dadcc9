"""The server process killed with SIGKILL in the middle of a push, on SQLite and PostgreSQL:
between mutation k and k+1 of a batch, and after the commit but before the response. The
client (the reference client, its queue kept) retries against a restarted server on the same
database: it gets the stored results (DUPLICATE for what was applied), nothing is applied twice
and nothing is lost."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from models import Note, SyncClient, SyncMutationResult, TopicProgress
from settings import Settings
from sync.client import SyncReplica
from tests.support import make_course, sign_up
from tests.test_live_support import free_port, spawn_web, stop, wait_ready
from tests.test_sync_support import sync_tables

pytestmark = pytest.mark.usefixtures("sync_tables")
_ = sync_tables


class Server:
    """A real `uvicorn` web process on the test database; `kill()` is SIGKILL."""

    def __init__(self, settings: Settings, data_dir: Path, fault: str | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.marker = data_dir / f"fault-{uuid.uuid4().hex}"
        extra = {}
        if fault:
            extra = {
                "COURSEGEN_FAULT_PAUSE_AFTER": fault,
                "COURSEGEN_FAULT_MARKER": str(self.marker),
            }
        self.process = spawn_web(settings, self.port, extra=extra, data_dir=data_dir)

    async def ready(self) -> None:
        await wait_ready(self.base, self.process)

    async def kill_at_fault(self, request: asyncio.Task[Any]) -> None:
        """Wait for the server to reach its fault point, then SIGKILL it."""
        async with asyncio.timeout(60):
            while not self.marker.exists():
                assert not request.done(), request  # it must not answer before the fault
                await asyncio.sleep(0.02)
        self.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.process.wait)
        assert self.process.returncode == -signal.SIGKILL


@pytest.fixture
def servers(settings: Settings, tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        yield started
    finally:
        stop(*(server.process for server in started))


def _transport(base: str, token: str) -> Any:
    async def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            response = await client.post(
                path, json=body, headers={"authorization": f"Bearer {token}"}
            )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    return call


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> AsyncIterator[tuple[Any, list[str]]]:
    user = await sign_up(client)
    tree = await make_course(user.id, subjects=2, topics=5)
    yield user, [str(t) for t in tree.topic_ids]


async def _lmid(replica: SyncReplica) -> int:
    rows = await SyncClient.filter(group_id=replica.group, client_id=replica.client).values_list(
        "last_mutation_id", flat=True
    )
    return int(str(rows[0])) if rows else 0


def _queue(replica: SyncReplica, topics: list[str], count: int) -> list[str]:
    """Queue `count` mutations: notes (one row each) and completions. Returns the note ids."""
    notes = []
    for n in range(count):
        if n % 2 == 0:
            note_id = str(uuid.uuid4())
            notes.append(note_id)
            replica.mutate("createNote", {"noteId": note_id, "topicId": topics[n], "body": f"n{n}"})
        else:
            replica.mutate("completeTopic", {"topicId": topics[n]})
    return notes


async def _assert_once(
    user_id: uuid.UUID, replica: SyncReplica, notes: list[str], count: int
) -> None:
    assert await Note.filter(user_id=user_id).count() == len(notes)
    assert sorted(
        str(n) for n in await Note.filter(user_id=user_id).values_list("id", flat=True)
    ) == sorted(notes)
    assert await TopicProgress.filter(user_id=user_id, completed=True).count() == count - len(notes)
    assert await SyncMutationResult.filter(client__group_id=replica.group).count() == count
    assert await _lmid(replica) == count


async def test_killed_between_mutation_k_and_k_plus_1(
    settings: Settings, tmp_path: Path, servers: list[Server], owner: tuple[Any, list[str]]
) -> None:
    user, topics = owner
    servers.append(faulty := Server(settings, tmp_path, fault="mutation:3"))
    await faulty.ready()
    replica = SyncReplica(_transport(faulty.base, user.token), str(tmp_path / "device.sqlite3"))
    notes = _queue(replica, topics, 8)
    first = await replica.push(batch=2)  # two new mutations: the fault (after 3) is not reached
    assert first and [r["status"] for r in first["results"]] == ["APPLIED"] * 2
    # No pull yet, so the queue still holds 1 and 2: the push re-sends them, then 3, 4, 5, and
    # the server dies before 6.
    request = asyncio.create_task(replica.push())
    await faulty.kill_at_fault(request)
    with pytest.raises(httpx.TransportError):
        await request
    # Mutations 3 to 5 ran in the push's transaction, which died uncommitted.
    assert await _lmid(replica) == 2
    assert await Note.filter(user_id=user.id).count() == 1

    servers.append(restarted := Server(settings, tmp_path))
    await restarted.ready()
    replica.transport = _transport(restarted.base, user.token)
    sent = replica.pending()
    retry = await replica.push()
    assert retry is not None
    assert [r["status"] for r in retry["results"]] == ["DUPLICATE"] * 2 + ["APPLIED"] * 6
    assert [r["firstStatus"] for r in retry["results"][:2]] == ["APPLIED"] * 2
    await replica.pull()
    assert replica.pending() == []
    await _assert_once(user.id, replica, notes, 8)
    # Another lost response and retry of the whole batch: all stored, nothing runs again.
    body = {"protocolVersion": 1, "clientGroupId": replica.group, "mutations": sent}
    again = await replica.transport("/sync/push", body)
    assert [r["status"] for r in again["results"]] == ["DUPLICATE"] * 8
    assert {r["firstStatus"] for r in again["results"]} == {"APPLIED"}
    await _assert_once(user.id, replica, notes, 8)


async def test_killed_after_commit_before_the_response(
    settings: Settings, tmp_path: Path, servers: list[Server], owner: tuple[Any, list[str]]
) -> None:
    user, topics = owner
    servers.append(faulty := Server(settings, tmp_path, fault="commit"))
    await faulty.ready()
    replica = SyncReplica(_transport(faulty.base, user.token), str(tmp_path / "device.sqlite3"))
    notes = _queue(replica, topics, 6)
    request = asyncio.create_task(replica.push())
    await faulty.kill_at_fault(request)
    with pytest.raises(httpx.TransportError):
        await request
    # Committed, but the client never heard: its queue still holds all six.
    assert await _lmid(replica) == 6
    assert len(replica.pending()) == 6

    servers.append(restarted := Server(settings, tmp_path))
    await restarted.ready()
    replica.transport = _transport(restarted.base, user.token)
    retry = await replica.push()
    assert retry is not None
    assert [r["status"] for r in retry["results"]] == ["DUPLICATE"] * 6
    assert [r["firstStatus"] for r in retry["results"]] == ["APPLIED"] * 6
    await replica.pull()
    assert replica.pending() == []
    await _assert_once(user.id, replica, notes, 6)
    for note_id in notes:
        assert ("note", note_id) in replica.server_rows()
