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
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
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
)

PUT = "PUT"
DEL = "DEL"

# Scopes stamped by the current task since the last `take_changed()`: (scope, version).
_changed: ContextVar[list[tuple[str, int]] | None] = ContextVar("sync_changed", default=None)


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
    db = _db()
    row = await SyncScope.filter(key=scope).select_for_update().first()
    if row is None:
        a, b = _params(db, 2)
        await db.execute_query(
            "INSERT INTO sync_scopes (key, version, gc_version, updated_at) "  # noqa: S608
            f"VALUES ({a}, 0, 0, {b}) ON CONFLICT (key) DO NOTHING",
            [scope, datetime.now(UTC)],
        )
        row = await SyncScope.filter(key=scope).select_for_update().get()
    if row.version == 0:
        await _backfill(scope)
        await SyncScope.filter(key=scope).update(version=1)
        return 1
    return int(row.version)


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


async def stamp(
    scope: str,
    put: Iterable[tuple[str, Any, dict[str, Any]]] = (),
    delete: Iterable[tuple[str, Any]] = (),
) -> int:
    """Bump the scope once and stamp the given rows with the new version (in a transaction)."""
    current = await lock(scope)
    version = current + 1
    await SyncScope.filter(key=scope).update(version=version, updated_at=datetime.now(UTC))
    rows: list[tuple[str, str, str, dict[str, Any] | None]] = [
        (kind, str(ident), PUT, data) for kind, ident, data in put
    ]
    rows += [(kind, str(ident), DEL, None) for kind, ident in delete]
    await _upsert(scope, version, rows)
    changed = _changed.get()
    if changed is None:
        changed = []
        _changed.set(changed)
    changed.append((scope, version))
    return version


def take_changed() -> list[tuple[str, int]]:
    """The scopes stamped by this task since the last call (to poke after a commit)."""
    changed = _changed.get()
    if not changed:
        return []
    taken = list(changed)
    changed.clear()
    return taken


def forget_changed() -> None:
    """Drop what was recorded (the transaction rolled back)."""
    changed = _changed.get()
    if changed:
        changed.clear()


# --- per-field clocks (last-writer-wins) ---------------------------------------------------------


async def clocks_of(scope: str, kind: str, ident: Any) -> dict[str, str]:
    row = await SyncEntry.filter(scope=scope, type=kind, entity_id=str(ident)).first()
    return json.loads(row.clocks) if row is not None else {}


async def set_clocks(scope: str, kind: str, ident: Any, clocks: dict[str, str]) -> None:
    """Record the winning clock of each field (after the row's entry was stamped)."""
    current = await clocks_of(scope, kind, ident)
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
