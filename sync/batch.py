"""Set-wise push: a run of one client's new mutations applied with a bounded number of statements.

The mutators of sync/mutators.py apply one mutation at a time: about nine statements and a
savepoint each. A run of the common intents (progress, bookmarks, notes, course fields) is
applied here as a set instead, in three steps:

1. read: lock what the run writes (course rows, then scopes, as every writer does), then read
   every row its mutations name with one keyed statement per table;
2. decide: run each mutation's conflict rule in Python, in order, over those rows, so that a
   mutation sees the effects of the ones before it exactly as it would one at a time; a
   mutation that fails a check changes nothing and gets its REJECTED;
3. write: the rows that changed, one multi-row statement per table (models/bulk.py).

The rules are those of sync/mutators.py, check for check and in the same order (the property
test of sync holds both paths to one model). The caller runs this inside a savepoint; a run
whose write fails is rolled back to it and applied again one mutation at a time, so one bad
row costs only its own mutation.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

from models import MemberRole, bulk
from services import scopes
from services.accounts import Viewer
from services.courses import CourseChanges
from services.errors import DomainError, ErrorCode, invalid, not_found
from services.learning import _clean_body
from services.permissions import Access, require_edit
from services.validation import clean_text, parse_id, validated
from sync import hlc as clocks
from sync.hlc import Hlc, newer
from sync.mutators import (
    CONFLICT_NAMESPACE,
    Outcome,
    Rejected,
    Touched,
    _args,
    _id,
    _superseded,
    _text,
)
from sync.protocol import Mutation

COMPLETIONS = {"completeTopic": True, "uncompleteTopic": False}
BOOKMARKS = {"bookmarkTopic": True, "unbookmarkTopic": False}
NOTES = frozenset({"createNote", "saveNote", "deleteNote"})
COURSE_FIELDS = {
    "renameCourse": {"title"},
    "updateCourseDetails": {"description", "level", "language"},
}
SETWISE = frozenset({*COMPLETIONS, *BOOKMARKS, *NOTES, *COURSE_FIELDS})

EntryKey = tuple[str, str, str]  # (scope, type, entity id)


@dataclass(slots=True)
class Applied:
    """What one mutation of a run came to, for the caller to answer and store."""

    mutation: Mutation
    outcome: Outcome | Rejected
    canonical: list[dict[str, Any]]


@dataclass(slots=True)
class _Intent:
    m: Mutation
    hlc: Hlc
    args: dict[str, Any]
    topic: uuid.UUID | None = None
    note: uuid.UUID | None = None
    copy: uuid.UUID | None = None
    course: uuid.UUID | None = None


@dataclass(slots=True)
class _Entry:
    version: int
    op: str
    data: str | None
    clocks: dict[str, str]
    changed_at: Any
    dirty: bool = False


@dataclass(slots=True)
class _Course:
    id: uuid.UUID
    owner_id: uuid.UUID
    deleted: bool
    version: int
    title: str
    description: str
    level: str
    language: str
    status: str
    role: str | None
    changed: bool = False


@dataclass(slots=True)
class _Note:
    id: uuid.UUID
    user_id: uuid.UUID
    topic_id: uuid.UUID
    body: str
    version: int
    created_at: Any
    deleted_at: Any = None
    updated_at: Any = None
    changed: bool = False


@dataclass(slots=True)
class _Progress:
    id: uuid.UUID
    completed: bool = False
    completed_at: Any = None
    score: int | None = None
    changed: bool = False


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _copy_id(note_id: uuid.UUID, group: str, m: Mutation) -> uuid.UUID:
    return uuid.uuid5(CONFLICT_NAMESPACE, f"{note_id}/{group}/{m.client_id}/{m.id}")


def _patch(scope: str, kind: str, ident: str, entry: _Entry) -> dict[str, Any]:
    patch: dict[str, Any] = {
        "op": entry.op,
        "scope": scope,
        "type": kind,
        "id": ident,
        "version": entry.version,
    }
    if entry.op == scopes.PUT and entry.data is not None:
        patch["data"] = json.loads(entry.data)
    return patch


@dataclass
class _Run:
    viewer: Viewer
    group: str
    db: BaseDBAsyncClient
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    topics: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # topic → its course
    courses: dict[uuid.UUID, _Course] = field(default_factory=dict)
    notes: dict[uuid.UUID, _Note] = field(default_factory=dict)
    progress: dict[uuid.UUID, _Progress] = field(default_factory=dict)
    bookmarks: set[uuid.UUID] = field(default_factory=set)  # as the run goes
    bookmarked_before: set[uuid.UUID] = field(default_factory=set)
    entries: dict[EntryKey, _Entry] = field(default_factory=dict)
    stamped: set[str] = field(default_factory=set)
    archive: list[tuple[Mutation, str, str, str]] = field(default_factory=list)

    @property
    def user_scope(self) -> str:
        return scopes.user_scope(self.viewer.id)

    # --- access, as services.permissions and sync.mutators decide it -------------------------

    def access(self, course: _Course) -> Access | None:
        if course.owner_id == self.viewer.id:
            return Access.OWNER
        if course.role == MemberRole.EDITOR:
            return Access.EDITOR
        if course.role == MemberRole.VIEWER:
            return Access.VIEWER
        return None

    def reach(self, course_id: uuid.UUID) -> _Course:
        course = self.courses.get(course_id)
        if course is None:
            raise Rejected(ErrorCode.NOT_FOUND, "No course with that id.")
        if course.deleted:
            raise Rejected(
                ErrorCode.ENTITY_DELETED,
                "The course was deleted.",
                [(scopes.course_scope(course_id), "course", str(course_id))],
            )
        if self.access(course) is None:
            raise Rejected(ErrorCode.FORBIDDEN, "You no longer have access to this course.")
        return course

    def reachable(self, course_id: uuid.UUID) -> bool:
        course = self.courses.get(course_id)
        return course is not None and not course.deleted and self.access(course) is not None

    def topic_course(self, topic_id: uuid.UUID) -> uuid.UUID:
        course = self.topics.get(topic_id)
        if course is None:
            raise Rejected(ErrorCode.NOT_FOUND, "No topic with that id.")
        return course

    def own_note(self, note_id: uuid.UUID) -> _Note | None:
        note = self.notes.get(note_id)
        if note is not None and note.user_id != self.viewer.id:
            raise Rejected(ErrorCode.NOT_FOUND, "No note with that id.")
        return note

    # --- entries ----------------------------------------------------------------------------

    def clocks_of(self, key: EntryKey) -> dict[str, str]:
        entry = self.entries.get(key)
        return entry.clocks if entry is not None else {}

    def _stamp(self, key: EntryKey, op: str, data: dict[str, Any] | None) -> None:
        scope = key[0]
        version = scopes.next_version(scope)
        self.stamped.add(scope)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = _Entry(version, op, None, {}, self.now)
        entry.version, entry.op, entry.changed_at, entry.dirty = version, op, self.now, True
        entry.data = json.dumps(data) if data is not None else None

    def put(self, key: EntryKey, data: dict[str, Any]) -> None:
        self._stamp(key, scopes.PUT, data)

    def delete(self, key: EntryKey) -> None:
        self._stamp(key, scopes.DEL, None)

    def set_clocks(self, key: EntryKey, winning: dict[str, str]) -> None:
        entry = self.entries.get(key)
        if entry is not None:  # as `scopes.set_clocks`: a row with no entry keeps no clock
            entry.clocks = {**entry.clocks, **winning}
            entry.dirty = True

    def canonical(self, touched: list[Touched]) -> list[dict[str, Any]]:
        """As `sync.push.canonical`, over the run's state."""
        patches: list[dict[str, Any]] = []
        for scope, kind, ident in touched:
            entry = self.entries.get((scope, kind, ident))
            course = scope.startswith("course:") and not self.reachable(
                _uuid(scope.partition(":")[2])
            )
            if course and (entry is None or entry.op != scopes.DEL):
                patches.append(
                    {"op": "DROP_SCOPE", "scope": scope, "type": "", "id": "", "version": 0}
                )
                continue
            if entry is not None:
                patches.append(_patch(scope, kind, ident, entry))
        return patches

    # --- the rules (sync/mutators.py) -------------------------------------------------------

    def completion(self, i: _Intent, completed: bool) -> Outcome:
        assert i.topic is not None
        score = i.args.get("score")
        self.reach(self.topic_course(i.topic))
        key = (self.user_scope, "progress", str(i.topic))
        if not newer(i.hlc, self.clocks_of(key).get("completed")):
            return _superseded([key], "this topic's completion")
        if score is not None and not 0 <= score <= 100:
            raise invalid("score: between 0 and 100.", field="input.score")
        row = self.progress.get(i.topic)
        if row is None:
            row = self.progress[i.topic] = _Progress(id=uuid.uuid4())
        row.completed = completed
        row.completed_at = self.now if completed else None
        row.score = score if completed else None
        row.changed = True
        data = {"id": str(i.topic), "topicId": str(i.topic), "completed": completed}
        self.put(key, {**data, "score": row.score})
        self.set_clocks(key, {"completed": str(i.hlc)})
        return Outcome()

    def bookmark(self, i: _Intent, add: bool) -> Outcome:
        assert i.topic is not None
        self.reach(self.topic_course(i.topic))
        key = (self.user_scope, "bookmark", str(i.topic))
        added = self.clocks_of(key).get("add")
        if add:
            if i.topic not in self.bookmarks:
                self.bookmarks.add(i.topic)
                self.put(key, {"id": str(i.topic), "topicId": str(i.topic)})
            if newer(i.hlc, added):
                self.set_clocks(key, {"add": str(i.hlc)})
            return Outcome()
        if not newer(i.hlc, added):
            return _superseded([key], "this bookmark (an addition wins)")
        if i.topic in self.bookmarks:
            self.bookmarks.discard(i.topic)
            self.delete(key)
        return Outcome()

    def _note_key(self, note_id: uuid.UUID) -> EntryKey:
        return (self.user_scope, "note", str(note_id))

    def _save_note(self, note_id: uuid.UUID, body: str, topic_id: uuid.UUID | None = None) -> None:
        """`services.learning.save_note` with a client-made id (its access checks were made)."""
        text = _clean_body(body)
        note = self.notes.get(note_id)
        if note is not None and (note.user_id != self.viewer.id or note.deleted_at):
            raise not_found("note", field="input.noteId")
        if note is None:
            if topic_id is None:
                raise invalid("topicId is needed to create a note.", field="input.topicId")
            note = _Note(note_id, self.viewer.id, topic_id, text, 1, self.now)
            self.notes[note_id] = note
        else:
            note.body = text
            note.version += 1
        note.updated_at, note.changed = self.now, True
        data = {"id": str(note.id), "topicId": str(note.topic_id), "body": note.body}
        self.put(self._note_key(note_id), {**data, "version": note.version})

    def create_note(self, i: _Intent) -> Outcome:
        assert i.note is not None and i.topic is not None
        key = self._note_key(i.note)
        note = self.own_note(i.note)
        if note is not None:  # created before: the same intent again
            if note.deleted_at is not None:
                raise Rejected(ErrorCode.ENTITY_DELETED, "The note was deleted.", [key])
            return Outcome(touched=[key])
        self.reach(self.topic_course(i.topic))
        self._save_note(i.note, i.args["body"], topic_id=i.topic)
        return Outcome()

    def save_note(self, i: _Intent) -> Outcome:
        assert i.note is not None and i.copy is not None
        body = i.args["body"]
        note = self.own_note(i.note)
        if note is None:
            raise Rejected(ErrorCode.NOT_FOUND, "No note with that id.")
        touched = [self._note_key(i.note)]
        if note.deleted_at is not None:
            raise Rejected(ErrorCode.ENTITY_DELETED, "The note was deleted.", touched)
        if i.m.base_version == note.version:
            self._save_note(i.note, body)
            return Outcome()
        if clean_text(body) == note.body:
            return Outcome(touched=touched)  # the same text: nothing to merge
        self.reach(self.topic_course(note.topic_id))
        self._save_note(i.copy, body, topic_id=note.topic_id)
        return Outcome(
            status="MERGED",
            code="CONFLICT_COPY",
            message=(
                f"The note changed since version {i.m.base_version}; your text was kept as a "
                "separate note."
            ),
            data={"conflictNoteId": str(i.copy)},
            touched=[*touched, self._note_key(i.copy)],
            conflict=True,
        )

    def delete_note(self, i: _Intent) -> Outcome:
        assert i.note is not None
        note = self.own_note(i.note)
        if note is None:
            raise Rejected(ErrorCode.NOT_FOUND, "No note with that id.")
        if note.deleted_at is None:
            note.deleted_at = note.updated_at = self.now
            note.changed = True
            self.delete(self._note_key(i.note))
        return Outcome()

    def update_course(self, i: _Intent, names: set[str]) -> Outcome:
        assert i.course is not None
        course = self.reach(i.course)
        changes = {name: i.args[name] for name in names if name in i.args}
        key = (scopes.course_scope(i.course), "course", str(i.course))
        stored = self.clocks_of(key)
        winning = {name: value for name, value in changes.items() if newer(i.hlc, stored.get(name))}
        if not winning:
            return _superseded([key], "these fields") if changes else Outcome()
        valid = validated(CourseChanges, winning, prefix="input.").model_dump(exclude_unset=True)
        if any(value is None for value in valid.values()):
            raise invalid("Fields may be left out but not set to null.", field="input")
        access = self.access(course)
        assert access is not None
        require_edit(access)
        if valid:
            for name, value in valid.items():
                setattr(course, name, str(getattr(value, "value", value)))
            course.version += 1
            course.changed = True
            self.put(key, _course_data(course))
        self.set_clocks(key, dict.fromkeys(winning, str(i.hlc)))
        if len(winning) < len(changes):
            return Outcome(
                code="PARTIAL", message="Later changes of some fields won.", touched=[key]
            )
        return Outcome()

    def decide(self, i: _Intent) -> Outcome:
        name = i.m.name
        if name in COMPLETIONS:
            return self.completion(i, COMPLETIONS[name])
        if name in BOOKMARKS:
            return self.bookmark(i, BOOKMARKS[name])
        if name == "createNote":
            return self.create_note(i)
        if name == "saveNote":
            return self.save_note(i)
        if name == "deleteNote":
            return self.delete_note(i)
        return self.update_course(i, COURSE_FIELDS[name])


def _course_data(c: _Course) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "ownerId": str(c.owner_id),
        "title": c.title,
        "description": c.description,
        "level": c.level,
        "language": c.language,
        "status": c.status,
    }


def _intent(group: str, m: Mutation) -> _Intent:
    """The mutation's arguments, checked as its mutator checks them before it reads anything
    (a failure here is the same INVALID_INPUT, whatever the state)."""
    try:
        hlc = clocks.clamp(clocks.parse(m.hlc))
    except ValueError as error:
        raise Rejected(ErrorCode.INVALID_INPUT, str(error)) from None
    name = m.name
    if name in COMPLETIONS:
        optional = frozenset({"score"}) if COMPLETIONS[name] else frozenset()
        args = _args(m.args, {"topicId"}, optional)
        topic = _id(args, "topicId")
        score = args.get("score")
        if score is not None and (not isinstance(score, int) or isinstance(score, bool)):
            raise invalid("args.score: an integer from 0 to 100.", "args.score")
        return _Intent(m, hlc, args, topic=topic)
    if name in BOOKMARKS:
        args = _args(m.args, {"topicId"})
        return _Intent(m, hlc, args, topic=_id(args, "topicId"))
    if name == "createNote":
        args = _args(m.args, {"noteId", "topicId", "body"})
        note, topic = _id(args, "noteId"), _id(args, "topicId")
        _text(args, "body")
        return _Intent(m, hlc, args, note=note, topic=topic)
    if name == "saveNote":
        args = _args(m.args, {"noteId", "body"})
        note = _id(args, "noteId")
        _text(args, "body")
        return _Intent(m, hlc, args, note=note, copy=_copy_id(note, group, m))
    if name == "deleteNote":
        args = _args(m.args, {"noteId"})
        return _Intent(m, hlc, args, note=_id(args, "noteId"))
    names = COURSE_FIELDS[name]
    if name == "renameCourse":
        args = _args(m.args, {"courseId", "title"})
    else:
        args = _args(m.args, {"courseId"}, frozenset(names))
    return _Intent(m, hlc, args, course=parse_id(args["courseId"], "args.courseId"))


def _failure(error: Exception) -> Rejected:
    if isinstance(error, Rejected):
        return error
    assert isinstance(error, DomainError)
    return Rejected(error.code, error.message)


async def apply_run(
    viewer: Viewer, group: str, run: list[Mutation], writes: bulk.Writes
) -> list[Applied]:
    """Apply a run of new mutations (names in SETWISE, ids consecutive) of one client: read,
    decide, and add the writes to `writes` (the caller sends them before it commits; before
    this reads, the writes of earlier runs must have gone out). Inside the caller's
    transaction, with `scopes` tracking it."""
    state = _Run(viewer, group, connections.get("default"))
    intents: list[_Intent | Rejected] = []
    for m in run:
        try:
            intents.append(_intent(group, m))
        except (Rejected, DomainError) as error:
            intents.append(_failure(error))
    valid = [i for i in intents if isinstance(i, _Intent)]
    await _read(state, valid)
    applied: list[Applied] = []
    for m, intent in zip(run, intents, strict=True):
        outcome: Outcome | Rejected
        if isinstance(intent, Rejected):
            outcome = intent
        else:
            try:
                outcome = state.decide(intent)
            except (Rejected, DomainError) as error:
                outcome = _failure(error)
        touched = outcome.touched
        canonical = state.canonical(touched) if touched else []
        if isinstance(outcome, Rejected):
            state.archive.append((m, "rejected", str(outcome.code), outcome.message))
        elif outcome.conflict:
            state.archive.append((m, "conflict", outcome.code or "", outcome.message or ""))
        applied.append(Applied(m, outcome, canonical))
    await _write(state, writes)
    return applied


# --- read ---------------------------------------------------------------------------------------

_COURSE_COLUMNS = (
    "c.id, c.owner_id, c.deleted_at, c.version, c.title, c.description, c.level, c.language, "
    "c.status, m.role"
)
_NOTE_COLUMNS = "id, user_id, topic_id, body, version, created_at, deleted_at"
_ENTRY_COLUMNS = "scope, type, entity_id, version, op, data, clocks, changed_at"
_PROGRESS_COLUMNS = "id, topic_id, completed, completed_at, score"

# Rows are taken as tuples in their columns' order: the dict rows of the per-table reads and
# the records of the one-statement read (PostgreSQL) go through the same code.
Row = Sequence[Any]


def _course_row(row: Row) -> _Course:
    id_, owner, deleted_at, version, title, description, level, language, status, role = row
    return _Course(
        id=_uuid(id_),
        owner_id=_uuid(owner),
        deleted=deleted_at is not None,
        version=int(version),
        title=title,
        description=description,
        level=str(level),
        language=language,
        status=str(status),
        role=None if role is None else str(role),
    )


def _note_row(state: _Run, row: Row) -> None:
    id_, user_id, topic_id, body, version, created_at, deleted_at = row
    note = _Note(
        id=_uuid(id_),
        user_id=_uuid(user_id),
        topic_id=_uuid(topic_id),
        body=body,
        version=int(version),
        created_at=created_at,
        deleted_at=deleted_at,
    )
    state.notes[note.id] = note


def _progress_row(state: _Run, row: Row) -> None:
    id_, topic_id, completed, completed_at, score = row
    state.progress[_uuid(topic_id)] = _Progress(
        id=_uuid(id_), completed=bool(completed), completed_at=completed_at, score=score
    )


def _entry_rows(state: _Run, intents: list[_Intent], rows: Iterable[Row]) -> None:
    """Keep the entries of the keys the run names (the read may return a few more: it asks
    for any of the scopes and any of the ids)."""
    keys: set[EntryKey] = set()
    for i in intents:
        if i.topic is not None:
            keys.add((state.user_scope, "progress", str(i.topic)))
            keys.add((state.user_scope, "bookmark", str(i.topic)))
        for note_id in (i.note, i.copy):
            if note_id is not None:
                keys.add((state.user_scope, "note", str(note_id)))
    for course_id in state.courses:
        keys.add((scopes.course_scope(course_id), "course", str(course_id)))
    for scope, kind, ident, version, op, data, clock_text, changed_at in rows:
        key = (scope, kind, ident)
        if key in keys:
            state.entries[key] = _Entry(
                int(version), op, data, json.loads(clock_text or "{}"), changed_at
            )


async def _read_courses(state: _Run, ids: set[uuid.UUID], *, lock: bool) -> None:
    db = state.db
    if not ids:
        return
    where, args = bulk.any_of(db, "c.id", "uuid", sorted(ids), 2)
    query = (
        f"SELECT {_COURSE_COLUMNS} FROM courses c LEFT JOIN course_members m "  # noqa: S608
        f"ON m.course_id = c.id AND m.user_id = {bulk.placeholder(db, 1)} WHERE {where}"
    )
    if lock and not bulk.is_sqlite(db):  # SQLite has one writer: the transaction is the lock
        query += " ORDER BY c.id FOR UPDATE OF c"
    for row in await db.execute_query_dict(query, bulk.params(db, [state.viewer.id, *args])):
        course = _course_row(tuple(row.values()))
        state.courses[course.id] = course


async def _read(state: _Run, intents: list[_Intent]) -> None:
    """Locks in the order every writer takes them (course rows, course scopes, the user's
    scope), then what the run names: one keyed read per table, or on PostgreSQL all of them
    in one statement (a single tap's push is mostly round trips)."""
    edited = {i.course for i in intents if i.course is not None}
    await _read_courses(state, edited, lock=True)
    for course_id in sorted(edited):
        if state.reachable(course_id):
            await scopes.lock(scopes.course_scope(course_id))
    if any(i.m.name not in COURSE_FIELDS for i in intents):
        await scopes.lock(state.user_scope)
    if bulk.is_sqlite(state.db):
        await _read_apart(state, intents)
    else:
        await _read_together(state, intents)


def _wanted(
    intents: list[_Intent],
) -> tuple[set[uuid.UUID], set[uuid.UUID], set[uuid.UUID], set[uuid.UUID]]:
    """Notes, topics, topics to complete and topics to bookmark that the run names."""
    notes = {n for i in intents for n in (i.note, i.copy) if n is not None}
    topics = {i.topic for i in intents if i.topic is not None}
    completions = {i.topic for i in intents if i.m.name in COMPLETIONS and i.topic is not None}
    marks = {i.topic for i in intents if i.m.name in BOOKMARKS and i.topic is not None}
    return notes, topics, completions, marks


# One statement for every keyed read of a run after its locks: the notes, the topics (those
# named and those of the notes), their courses with the viewer's role (but those already read
# and locked), the sync entries of all of them, progress and bookmarks. Each part comes back
# as an array of records, which asyncpg decodes with their types.
_TOGETHER = f"""
WITH n AS (SELECT {_NOTE_COLUMNS} FROM notes WHERE id = ANY($2::uuid[])),
t AS (SELECT id, course_id FROM topics
      WHERE id = ANY($3::uuid[]) OR id IN (SELECT topic_id FROM n)),
c AS (SELECT {_COURSE_COLUMNS} FROM courses c
      LEFT JOIN course_members m ON m.course_id = c.id AND m.user_id = $1
      WHERE c.id IN (SELECT course_id FROM t) AND NOT c.id = ANY($4::uuid[]))
SELECT
  ARRAY(SELECT ROW(n.*) FROM n) AS notes,
  ARRAY(SELECT ROW(t.*) FROM t) AS topics,
  ARRAY(SELECT ROW(c.*) FROM c) AS courses,
  ARRAY(SELECT ROW({_ENTRY_COLUMNS}) FROM sync_entries
        WHERE scope = ANY($5::text[] || ARRAY(SELECT 'course:' || course_id FROM t))
          AND entity_id = ANY($6::text[] || ARRAY(SELECT course_id::text FROM t))) AS entries,
  ARRAY(SELECT ROW({_PROGRESS_COLUMNS}) FROM topic_progress
        WHERE user_id = $1 AND topic_id = ANY($7::uuid[])) AS progress,
  ARRAY(SELECT topic_id FROM bookmarks
        WHERE user_id = $1 AND topic_id = ANY($8::uuid[])) AS bookmarks
"""  # noqa: S608 (no value is spliced in: only column lists)


async def _read_together(state: _Run, intents: list[_Intent]) -> None:
    notes, topics, completions, marks = _wanted(intents)
    known = list(state.courses)
    scope_keys = [state.user_scope, *(scopes.course_scope(c) for c in known)]
    ids = [*map(str, topics), *map(str, notes), *map(str, known)]
    args = [state.viewer.id, list(notes), list(topics), known, scope_keys, ids]
    rows = await state.db.execute_query_dict(_TOGETHER, [*args, list(completions), list(marks)])
    row = rows[0]
    for note in row["notes"]:
        _note_row(state, note)
    for topic_id, course_id in row["topics"]:
        state.topics[_uuid(topic_id)] = _uuid(course_id)
    for course_row in row["courses"]:
        course = _course_row(course_row)
        state.courses[course.id] = course
    _entry_rows(state, intents, row["entries"])
    for progress in row["progress"]:
        _progress_row(state, progress)
    if marks:
        state.bookmarks = {_uuid(topic_id) for topic_id in row["bookmarks"]}
        state.bookmarked_before = set(state.bookmarks)


async def _read_apart(state: _Run, intents: list[_Intent]) -> None:
    db, user = state.db, state.viewer.id
    notes, topics, completions, marks = _wanted(intents)
    if notes:
        where, args = bulk.any_of(db, "id", "uuid", notes, 1)
        query = f"SELECT {_NOTE_COLUMNS} FROM notes WHERE {where}"  # noqa: S608
        for row in await db.execute_query_dict(query, args):
            _note_row(state, tuple(row.values()))

    topics |= {n.topic_id for n in state.notes.values()}
    if topics:
        where, args = bulk.any_of(db, "id", "uuid", topics, 1)
        query = f"SELECT id, course_id FROM topics WHERE {where}"  # noqa: S608
        for row in await db.execute_query_dict(query, args):
            state.topics[_uuid(row["id"])] = _uuid(row["course_id"])
    await _read_courses(state, set(state.topics.values()) - set(state.courses), lock=False)

    scope_keys = {state.user_scope, *(scopes.course_scope(c) for c in state.courses)}
    ids = {*map(str, topics), *map(str, notes), *map(str, state.courses)}
    in_scope, scope_args = bulk.any_of(db, "scope", "text", scope_keys, 1)
    in_ids, id_args = bulk.any_of(db, "entity_id", "text", ids, 1 + len(scope_args))
    query = f"SELECT {_ENTRY_COLUMNS} FROM sync_entries WHERE {in_scope} AND {in_ids}"  # noqa: S608
    rows = await db.execute_query_dict(query, [*scope_args, *id_args])
    _entry_rows(state, intents, (tuple(row.values()) for row in rows))

    if completions:
        where, args = bulk.any_of(db, "topic_id", "uuid", completions, 2)
        query = (
            f"SELECT {_PROGRESS_COLUMNS} FROM topic_progress "  # noqa: S608
            f"WHERE user_id = {bulk.placeholder(db, 1)} AND {where}"
        )
        for row in await db.execute_query_dict(query, bulk.params(db, [user, *args])):
            _progress_row(state, tuple(row.values()))

    if marks:
        where, args = bulk.any_of(db, "topic_id", "uuid", marks, 2)
        query = (
            "SELECT topic_id FROM bookmarks "  # noqa: S608
            f"WHERE user_id = {bulk.placeholder(db, 1)} AND {where}"
        )
        rows = await db.execute_query_dict(query, bulk.params(db, [user, *args]))
        state.bookmarks = {_uuid(row["topic_id"]) for row in rows}
        state.bookmarked_before = set(state.bookmarks)


# --- write --------------------------------------------------------------------------------------


def _excluded(*names: str) -> str:
    return ", ".join(f"{name} = excluded.{name}" for name in names)


async def _write(state: _Run, into: bulk.Writes) -> None:
    """One multi-row write per table, into `into` (on PostgreSQL one statement in all: each
    table's rows are distinct, as its parts may not see each other's)."""
    db, user, now = state.db, state.viewer.id, state.now
    for scope in sorted(state.stamped):
        planned = scopes.next_version(scope)
        if await scopes.bump(scope, into) != planned:
            raise RuntimeError(f"scope {scope} moved under its lock")

    progress = [(t, p) for t, p in state.progress.items() if p.changed]
    await bulk.insert(
        db,
        "topic_progress",
        [
            ("id", "uuid"),
            ("user_id", "uuid"),
            ("topic_id", "uuid"),
            ("completed", "bool"),
            ("completed_at", "timestamptz"),
            ("score", "int"),
            ("updated_at", "timestamptz"),
        ],
        [(p.id, user, t, p.completed, p.completed_at, p.score, now) for t, p in progress],
        "ON CONFLICT (user_id, topic_id) DO UPDATE SET "
        + _excluded("completed", "completed_at", "score", "updated_at"),
        into,
    )

    # A bookmark removed and added again within the run keeps its row (the delete and the
    # insert of one row cannot share a statement); its entry is stamped all the same.
    gone = state.bookmarked_before - state.bookmarks
    if gone:
        where, args = bulk.any_of(db, "topic_id", "uuid", gone, 2)
        await into.add(
            f"DELETE FROM bookmarks WHERE user_id = {bulk.placeholder(db, 1)} AND {where}",  # noqa: S608
            bulk.params(db, [user, *args]),
        )
    added = state.bookmarks - state.bookmarked_before
    await bulk.insert(
        db,
        "bookmarks",
        [("id", "uuid"), ("user_id", "uuid"), ("topic_id", "uuid"), ("created_at", "timestamptz")],
        [(uuid.uuid4(), user, t, now) for t in sorted(added)],
        "ON CONFLICT (user_id, topic_id) DO NOTHING",
        into,
    )

    notes = [n for n in state.notes.values() if n.changed]
    await bulk.insert(
        db,
        "notes",
        [
            ("id", "uuid"),
            ("user_id", "uuid"),
            ("topic_id", "uuid"),
            ("body", "text"),
            ("version", "int"),
            ("created_at", "timestamptz"),
            ("updated_at", "timestamptz"),
            ("deleted_at", "timestamptz"),
        ],
        [
            (
                n.id,
                n.user_id,
                n.topic_id,
                n.body,
                n.version,
                n.created_at,
                n.updated_at,
                n.deleted_at,
            )
            for n in notes
        ],
        "ON CONFLICT (id) DO UPDATE SET "
        + _excluded("body", "version", "updated_at", "deleted_at"),
    )

    await bulk.update(
        db,
        "courses",
        ("id", "uuid"),
        [
            ("title", "text"),
            ("description", "text"),
            ("level", "text"),
            ("language", "text"),
            ("version", "int"),
            ("updated_at", "timestamptz"),
        ],
        [
            (c.id, c.title, c.description, c.level, c.language, c.version, now)
            for c in state.courses.values()
            if c.changed
        ],
        into,
    )

    await bulk.insert(
        db,
        "sync_entries",
        [
            ("scope", "text"),
            ("type", "text"),
            ("entity_id", "text"),
            ("version", "bigint"),
            ("op", "text"),
            ("data", "text"),
            ("changed_at", "timestamptz"),
            ("clocks", "text"),
        ],
        [
            (
                scope,
                kind,
                ident,
                e.version,
                e.op,
                e.data,
                e.changed_at,
                json.dumps(e.clocks, sort_keys=True),
            )
            for (scope, kind, ident), e in sorted(state.entries.items())
            if e.dirty
        ],
        "ON CONFLICT (scope, type, entity_id) DO UPDATE SET "
        + _excluded("version", "op", "data", "changed_at", "clocks"),
        into,
    )

    rows = []
    for m, kind, code, message in state.archive:
        try:
            text = json.dumps(m.args)
        except (TypeError, ValueError):
            text = json.dumps(repr(m.args))
        rows.append(
            (user, state.group, m.client_id, m.id, m.name[:64], text, kind, code, message, now)
        )
    await bulk.insert(
        db,
        "sync_rejections",
        [
            ("user_id", "uuid"),
            ("group_id", "text"),
            ("client_id", "text"),
            ("mutation_id", "bigint"),
            ("name", "text"),
            ("args", "text"),
            ("kind", "text"),
            ("code", "text"),
            ("message", "text"),
            ("created_at", "timestamptz"),
        ],
        rows,
        into=into,
    )
