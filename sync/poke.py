"""syncPoke: after a commit, tell every user whose scopes changed to pull (no data).

`services.scopes` calls the listener that `listener()` makes after every outermost write
transaction that stamped scopes: web API mutations, sync pushes and the generation pipeline
alike. It publishes on the process broker (`subscriptions.broker.Broker.publish`, through
Redis to every process in production). Channel: `sync:<userId>`; data: a JSON list of
`{"scope", "version"}`. Who is poked for a course scope: its owner and members, and a member
removed by that very commit (so it pulls its `DROP_SCOPE` at once).

Pub/sub is at-most-once: a client that missed a poke pulls when it reconnects, and a resync
(the broker reconnected, or the subscriber fell behind) tells it to pull anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Iterable
from typing import Protocol

from models import Course, CourseMember, SyncEntry
from services.scopes import Changed, CommitListener
from subscriptions.broker import Broker

log = logging.getLogger("coursegen.sync")

PUBLISH_TIMEOUT_SECONDS = 2.0  # a poke never holds a write's response longer than this


class Publisher(Protocol):
    async def publish(self, channel: str, data: str) -> None: ...


def channel(user_id: object) -> str:
    return f"sync:{user_id}"


def listener(publisher: Publisher) -> CommitListener:
    """The commit listener of a process (register with `services.scopes.on_commit`)."""

    async def after_commit(changed: Changed) -> None:
        await poke(publisher, changed)

    return after_commit


async def poke(publisher: Publisher | None, changed: Iterable[tuple[str, int]]) -> None:
    latest: dict[str, int] = {}
    for scope, version in changed:
        latest[scope] = max(latest.get(scope, 0), version)
    if publisher is None or not latest:
        return
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
            readers = await _course_readers(latest)
            by_user: dict[str, list[dict[str, object]]] = {}
            for scope, version in sorted(latest.items()):
                kind, _, ident = scope.partition(":")
                users = {ident} if kind == "user" else readers.get(scope, set())
                for user in sorted(users):
                    by_user.setdefault(user, []).append({"scope": scope, "version": version})
            for user, items in by_user.items():
                await publisher.publish(channel(user), json.dumps(items))
    except Exception:
        log.warning("sync poke failed", exc_info=True)


async def _course_readers(latest: dict[str, int]) -> dict[str, set[str]]:
    """Owner and members of each course scope, and members removed by the commit that made
    `latest` (their `DEL` entry carries its version). A course deleted by it still has its
    owner and member rows: they are poked to pull its `DROP_SCOPE`."""
    scopes = [s for s in latest if s.startswith("course:")]
    if not scopes:
        return {}
    ids = [s.partition(":")[2] for s in scopes]
    readers: dict[str, set[str]] = {}
    for row in await Course.filter(id__in=ids).values("id", "owner_id"):
        readers.setdefault(f"course:{row['id']}", set()).add(str(row["owner_id"]))
    for row in await CourseMember.filter(course_id__in=ids).values("course_id", "user_id"):
        readers.setdefault(f"course:{row['course_id']}", set()).add(str(row["user_id"]))
    removed = await SyncEntry.filter(scope__in=scopes, type="member", op="DEL").values(
        "scope", "entity_id", "version"
    )
    for row in removed:
        if int(row["version"]) == latest[row["scope"]]:
            readers.setdefault(row["scope"], set()).add(str(row["entity_id"]))
    return readers


async def pokes(
    broker: Broker, user_id: uuid.UUID
) -> AsyncGenerator[list[dict[str, object]] | None]:
    """The user's pokes as they come: a list of `{scope, version}`, or None for a resync (some
    may have been missed: pull anyway)."""
    async with broker.subscribe(channel(user_id)) as subscription:
        async for message in subscription:
            if message.resync:
                yield None
                continue
            try:
                items = json.loads(message.data or "[]")
            except ValueError:
                continue
            yield [item for item in items if isinstance(item, dict)]
