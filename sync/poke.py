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

from tortoise import connections

from models import bulk
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
    ids = [uuid.UUID(s.partition(":")[2]) for s in scopes]
    # One statement (it runs after every commit that touched a course).
    db = connections.get("default")
    in_courses, course_args = bulk.any_of(db, "id", "uuid", ids, 1)
    in_members, member_args = bulk.any_of(db, "course_id", "uuid", ids, 1 + len(course_args))
    start = 1 + len(course_args) + len(member_args)
    in_scopes, scope_args = bulk.any_of(db, "scope", "text", scopes, start)
    if bulk.is_sqlite(db):  # numbered from the start for each part; SQLite's `?` take them in turn
        args = [*course_args, *member_args, *scope_args]
    else:
        in_members = in_members.replace(f"${1 + len(course_args)}", "$1")
        in_scopes = in_scopes.replace(f"${start}", "$2")
        args = [*course_args, *scope_args]
    rows = await db.execute_query_dict(
        "SELECT 'owner' AS k, CAST(id AS TEXT) AS course, CAST(owner_id AS TEXT) AS u, "  # noqa: S608
        f"0 AS v FROM courses WHERE {in_courses} UNION ALL "
        "SELECT 'member', CAST(course_id AS TEXT), CAST(user_id AS TEXT), 0 "
        f"FROM course_members WHERE {in_members} UNION ALL "
        "SELECT 'removed', scope, entity_id, version FROM sync_entries "
        f"WHERE {in_scopes} AND type = 'member' AND op = 'DEL'",
        args,
    )
    readers: dict[str, set[str]] = {}
    for row in rows:
        if row["k"] == "removed":
            if int(row["v"]) == latest[row["course"]]:
                readers.setdefault(row["course"], set()).add(str(row["u"]))
        else:
            readers.setdefault(f"course:{row['course']}", set()).add(str(row["u"]))
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
