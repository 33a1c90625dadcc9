"""Scope versions: every write stamps the sync scopes it changes (sync-protocol.md).

A scope (`user:<id>`: progress, notes and bookmarks of a user; `course:<id>`: a course, its
subjects, topics and members) has a version counter. A write transaction locks the scope's row,
bumps the version once, and upserts one entry per row it changed, stamped with that version:
`PUT` with the row's data, or `DEL` (a tombstone). Versions of a scope therefore commit in order
and a pull never skips a row that commits later with a smaller version.

Web API writes (services/courses.py, services/learning.py), the sync mutators and the generation
pipeline all call `stamp()` inside their own transactions. Lock order: a course write locks the
course row first, then its scope; a user-scope write locks the scope first (`lock()`).

The first time a scope is touched, its existing rows are written as entries (version 1), so
data that predates sync, or that was written straight to the database, is still sent.

Every write that stamps runs in `transaction()` (a Tortoise transaction, or a savepoint when
nested). When the outermost one commits, the scopes it stamped, with their new versions, go to
the listeners registered with `on_commit()`: that is how `syncPoke` learns of every commit
(web API, sync push, generation) from one place. Inside one transaction a scope is locked and
bumped once; later stamps of the same transaction reuse that version (one write transaction,
one increment, as the protocol says). A savepoint that rolls back forgets what the transaction
knew of its locks and bumps, so the next stamp locks and reads the row again (on PostgreSQL a
rolled-back savepoint can even release a row lock taken before it).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.transactions import in_transaction

from models import (
    Bookmark,
    Course,
    CourseMember,
    Note,
    Subject,
    SyncEntry,
    SyncScope,
    Topic,
    TopicProgress,
    bulk,
)

PUT = "PUT"
DEL = "DEL"

log = logging.getLogger("coursegen.sync")

Changed = list[tuple[str, int]]  # (scope, version) stamped by a committed transaction
CommitListener = Callable[[Changed], Awaitable[None]]


@dataclass
class _Write:
    """What the current outermost write transaction did to scopes so far."""

    changed: Changed = field(default_factory=list)
    locked: dict[str, int] = field(default_factory=dict)  # scope → version read under lock
    bumped: dict[str, int] = field(default_factory=dict)  # scope → version it was bumped to


_write: ContextVar[_Write | None] = ContextVar("sync_write", default=None)
_listeners: list[CommitListener] = []


def on_commit(listener: CommitListener) -> Callable[[], None]:
    """Call `listener(changed)` after every outermost `transaction()` of this process that
    stamped scopes commits. Returns the function that removes it (a process's lifespan)."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def _in_db_transaction() -> bool:
    return isinstance(connections.get("default"), TransactionalDBClient)


@asynccontextmanager
async def transaction() -> AsyncIterator[None]:
    """A write transaction that may stamp scopes (a savepoint when nested in another one)."""
    outer = _write.get()
    if outer is None:
        if _in_db_transaction():
            raise RuntimeError(
                "scopes.transaction() nested in a plain in_transaction(): its commit would not "
                "be seen; open the outermost transaction with scopes.transaction()"
            )
        write = _Write()
        token = _write.set(write)
        try:
            async with in_transaction():
                yield
        finally:
            _write.reset(token)
        if write.changed:
            await _notify(write.changed)
        return
    mark, locked, bumped = len(outer.changed), dict(outer.locked), dict(outer.bumped)
    try:
        async with in_transaction():
            yield
    except BaseException:
        # Rolled back to the savepoint: its stamps never happened, and scopes it locked or
        # bumped are locked no more (PostgreSQL forgets a lock taken before a savepoint when
        # the row is then updated in it and that is rolled back): they are locked again.
        del outer.changed[mark:]
        again = {scope for scope in outer.bumped if scope not in bumped}
        outer.locked = {k: v for k, v in locked.items() if k not in again}
        outer.bumped = bumped
        raise


async def _notify(changed: Changed) -> None:
    for listener in list(_listeners):
        try:
            await listener(list(changed))
        except Exception:  # a lost poke costs a later pull, never the write
            log.warning("a commit listener failed", exc_info=True)


def course_scope(course_id: uuid.UUID | str) -> str:
    return f"course:{course_id}"


def user_scope(user_id: uuid.UUID | str) -> str:
    return f"user:{user_id}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- row data, as patches carry it -------------------------------------------------------------


def course_data(c: Course) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "ownerId": str(c.owner_id),
        "title": c.title,
        "description": c.description,
        "level": str(getattr(c.level, "value", c.level)),
        "language": c.language,
        "status": str(getattr(c.status, "value", c.status)),
    }


def subject_data(s: Subject) -> dict[str, Any]:
    return {
        "id": str(s.id),
        "courseId": str(s.course_id),
        "rank": s.rank,
        "title": s.title,
        "summary": s.summary,
    }


def topic_data(t: Topic) -> dict[str, Any]:
    return {
        "id": str(t.id),
        "subjectId": str(t.subject_id),
        "courseId": str(t.course_id),
        "rank": t.rank,
        "title": t.title,
        "objectives": list(t.objectives or []),
        "content": t.content,
        "estimatedMinutes": t.estimated_minutes,
    }


def member_data(m: CourseMember) -> dict[str, Any]:
    return {
        "id": str(m.user_id),
        "courseId": str(m.course_id),
        "userId": str(m.user_id),
        "role": str(getattr(m.role, "value", m.role)),
    }


def progress_data(p: TopicProgress) -> dict[str, Any]:
    return {
        "id": str(p.topic_id),
        "topicId": str(p.topic_id),
        "completed": p.completed,
        "score": p.score,
    }


def note_data(n: Note) -> dict[str, Any]:
    return {"id": str(n.id), "topicId": str(n.topic_id), "body": n.body, "version": n.version}


def bookmark_data(b: Bookmark) -> dict[str, Any]:
    return {"id": str(b.topic_id), "topicId": str(b.topic_id)}


# --- stamping ------------------------------------------------------------------------------------


def _db() -> BaseDBAsyncClient:
    return connections.get("default")


def _sqlite(db: BaseDBAsyncClient) -> bool:
    return db.capabilities.dialect == "sqlite"


def _params(db: BaseDBAsyncClient, count: int, start: int = 1) -> list[str]:
    return ["?"] * count if _sqlite(db) else [f"${i}" for i in range(start, start + count)]


async def lock(scope: str) -> int:
    """Lock the scope's row for the caller's transaction (creating it); its current version."""
    write = _write.get()
    if write is not None and scope in write.locked:
        return write.locked[scope]
    version = await _lock(scope)
    if write is not None:
        write.locked[scope] = version
    return version


def locked_with(scope: str, version: int | None) -> None:
    """A caller that locked the scope's row in a statement of its own (a sync push locks it
    with its client's row: one round trip fewer) records the version it read. A missing row,
    or one not backfilled yet (version 0), is left to `lock()`, which makes it."""
    write = _current_write("locked_with")
    if version is not None and int(version) > 0 and scope not in write.locked:
        write.locked[scope] = int(version)


async def _lock(scope: str) -> int:
    # Plain SQL: this runs in every write transaction, and the ORM's query building cost more
    # than the round trip.
    db = _db()
    select = f"SELECT version FROM sync_scopes WHERE key = {_params(db, 1)[0]}"  # noqa: S608
    if not _sqlite(db):
        select += " FOR UPDATE"
    rows = await db.execute_query_dict(select, [scope])
    if not rows:
        a, b = _params(db, 2)
        await db.execute_query(
            "INSERT INTO sync_scopes (key, version, gc_version, updated_at) "  # noqa: S608
            f"VALUES ({a}, 0, 0, {b}) ON CONFLICT (key) DO NOTHING",
            [scope, datetime.now(UTC)],
        )
        rows = await db.execute_query_dict(select, [scope])
    if int(rows[0]["version"]) == 0:
        await _backfill(scope)
        await SyncScope.filter(key=scope).update(version=1)
        return 1
    return int(rows[0]["version"])


async def _backfill(scope: str) -> None:
    kind, _, raw = scope.partition(":")
    ident = uuid.UUID(raw)
    rows: list[tuple[str, str, dict[str, Any]]] = []
    if kind == "course":
        course = await Course.get_or_none(id=ident)
        if course is None or course.deleted_at is not None:
            return
        rows.append(("course", str(course.id), course_data(course)))
        rows += [
            ("subject", str(s.id), subject_data(s)) for s in await Subject.filter(course_id=ident)
        ]
        rows += [("topic", str(t.id), topic_data(t)) for t in await Topic.filter(course_id=ident)]
        rows += [
            ("member", str(m.user_id), member_data(m))
            for m in await CourseMember.filter(course_id=ident)
        ]
    else:
        rows += [
            ("progress", str(p.topic_id), progress_data(p))
            for p in await TopicProgress.filter(user_id=ident)
        ]
        rows += [
            ("note", str(n.id), note_data(n))
            for n in await Note.filter(user_id=ident, deleted_at=None)
        ]
        rows += [
            ("bookmark", str(b.topic_id), bookmark_data(b))
            for b in await Bookmark.filter(user_id=ident)
        ]
    await _upsert(scope, 1, [(t, i, PUT, d) for t, i, d in rows])


async def _upsert(
    scope: str, version: int, rows: Sequence[tuple[str, str, str, dict[str, Any] | None]]
) -> None:
    if not rows:
        return
    db = _db()
    now = datetime.now(UTC)
    # The clocks column keeps its value on conflict.
    p = _params(db, 7)
    query = (
        "INSERT INTO sync_entries (scope, type, entity_id, version, op, data, changed_at, clocks) "  # noqa: S608 -- placeholders only
        f"VALUES ({p[0]}, {p[1]}, {p[2]}, {p[3]}, {p[4]}, {p[5]}, {p[6]}, '{{}}') "
        "ON CONFLICT (scope, type, entity_id) DO UPDATE SET version = excluded.version, "
        "op = excluded.op, data = excluded.data, changed_at = excluded.changed_at"
    )
    values = [
        [scope, kind, ident, version, op, json.dumps(data) if data is not None else None, now]
        for kind, ident, op, data in rows
    ]
    await db.execute_many(query, values)


def _current_write(what: str) -> _Write:
    write = _write.get()
    if write is None:
        raise RuntimeError(f"scopes.{what}() outside scopes.transaction(): no poke would follow")
    return write


def next_version(scope: str) -> int:
    """The version this transaction stamps `scope` with, before it is bumped (the scope must be
    locked by this transaction: `lock()`). A writer that plans many rows at once (sync/batch.py)
    learns their version first and calls `bump()` when it writes them."""
    write = _current_write("next_version")
    if scope in write.bumped:
        return write.bumped[scope]
    if scope not in write.locked:
        raise RuntimeError(f"scopes.next_version({scope!r}) before lock()")
    return write.locked[scope] + 1


async def bump(scope: str, into: bulk.Writes | None = None) -> int:
    """The scope's version of this transaction: bumped by its first caller, reused after.
    With `into`, the update joins those writes (sent before the transaction commits)."""
    write = _current_write("bump")
    version = write.bumped.get(scope)
    if version is None:
        version = await lock(scope) + 1
        db = _db()
        a, b, c = _params(db, 3)
        query = f"UPDATE sync_scopes SET version = {a}, updated_at = {b} WHERE key = {c}"  # noqa: S608
        args = [version, datetime.now(UTC), scope]
        if into is not None:
            await into.add(query, args)
        else:
            await db.execute_query(query, args)
        write.bumped[scope] = write.locked[scope] = version
        write.changed.append((scope, version))
    return version


async def stamp(
    scope: str,
    put: Iterable[tuple[str, Any, dict[str, Any]]] = (),
    delete: Iterable[tuple[str, Any]] = (),
) -> int:
    """Stamp the given rows with the scope's version of this transaction (bumped once, by the
    transaction's first stamp of the scope). Only inside `transaction()`."""
    version = await bump(scope)
    rows: list[tuple[str, str, str, dict[str, Any] | None]] = [
        (kind, str(ident), PUT, data) for kind, ident, data in put
    ]
    rows += [(kind, str(ident), DEL, None) for kind, ident in delete]
    await _upsert(scope, version, rows)
    return version


# --- per-field clocks (last-writer-wins) ---------------------------------------------------------


async def clocks_of(scope: str, kind: str, ident: Any) -> dict[str, str]:
    row = await SyncEntry.filter(scope=scope, type=kind, entity_id=str(ident)).first()
    return json.loads(row.clocks) if row is not None else {}


async def set_clocks(
    scope: str,
    kind: str,
    ident: Any,
    clocks: dict[str, str],
    known: dict[str, str] | None = None,
) -> None:
    """Record the winning clock of each field (after the row's entry was stamped). `known`: the
    row's clocks as the caller read them in this transaction, under the scope's lock (saves
    reading them again)."""
    current = dict(known) if known is not None else await clocks_of(scope, kind, ident)
    current.update(clocks)
    await SyncEntry.filter(scope=scope, type=kind, entity_id=str(ident)).update(
        clocks=json.dumps(current, sort_keys=True)
    )


async def entries(scope: str, kind: str, ident: Any) -> list[SyncEntry]:
    return await SyncEntry.filter(scope=scope, type=kind, entity_id=str(ident))


# --- tombstones ----------------------------------------------------------------------------------


async def collect_tombstones(horizon: timedelta, now: datetime | None = None) -> int:
    """Delete tombstones older than `horizon`; scopes remember the newest deleted version so
    that clients whose cookie predates it reset those scopes. Returns how many were deleted."""
    cutoff = (now or datetime.now(UTC)) - horizon
    old = await SyncEntry.filter(op=DEL, changed_at__lt=cutoff).values("id", "scope", "version")
    if not old:
        return 0
    newest: dict[str, int] = {}
    for row in old:
        newest[row["scope"]] = max(newest.get(row["scope"], 0), int(row["version"]))
    async with in_transaction():
        for scope, version in sorted(newest.items()):
            locked = await SyncScope.filter(key=scope).select_for_update().first()
            if locked is not None and locked.gc_version < version:
                await SyncScope.filter(key=scope).update(gc_version=version)
        await SyncEntry.filter(id__in=[row["id"] for row in old]).delete()
    return len(old)
