"""A learner's own state on a topic: completion, notes, bookmarks. Seeing the course suffices."""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError

from models import Bookmark, Note, TopicProgress
from services import scopes
from services.courses import topic_with_access
from services.errors import DomainError, ErrorCode, invalid, not_found
from services.records import NoteRecord, ProgressRecord
from services.validation import clean_text

MAX_NOTE = 20_000


def _now() -> datetime:
    return datetime.now(UTC)


def _progress_record(row: TopicProgress) -> ProgressRecord:
    return ProgressRecord(
        topic_id=row.topic_id,
        completed=row.completed,
        completed_at=row.completed_at,
        score=row.score,
    )


def _note_record(note: Note) -> NoteRecord:
    return NoteRecord(**{name: getattr(note, name) for name in NoteRecord.FIELDS})


async def set_completion(
    user_id: uuid.UUID, topic_id: uuid.UUID, completed: bool, score: int | None = None
) -> ProgressRecord:
    if score is not None and not 0 <= score <= 100:
        raise invalid("score: between 0 and 100.", field="input.score")
    await topic_with_access(user_id, topic_id)
    async with scopes.transaction():
        await scopes.lock(scopes.user_scope(user_id))
        row = (
            await TopicProgress.filter(user_id=user_id, topic_id=topic_id)
            .select_for_update()
            .first()
        )
        if row is None:
            row = TopicProgress(user_id=user_id, topic_id=topic_id)
        row.completed = completed
        row.completed_at = _now() if completed else None
        row.score = score if completed else None
        await row.save()
        await scopes.stamp(
            scopes.user_scope(user_id), put=[("progress", topic_id, scopes.progress_data(row))]
        )
        return _progress_record(row)


def _clean_body(body: str) -> str:
    cleaned = clean_text(body)
    if not cleaned:
        raise invalid("body: a note cannot be empty.", field="input.body")
    if len(cleaned) > MAX_NOTE:
        raise invalid(f"body: at most {MAX_NOTE} characters.", field="input.body")
    return cleaned


async def save_note(
    user_id: uuid.UUID,
    *,
    body: str,
    topic_id: uuid.UUID | None = None,
    note_id: uuid.UUID | None = None,
    expected_version: int | None = None,
) -> NoteRecord:
    """Create a note on a topic (no `note_id`, or a new client-made one) or edit one's own."""
    text = _clean_body(body)
    async with scopes.transaction():
        await scopes.lock(scopes.user_scope(user_id))
        note = None
        if note_id is not None:
            note = await Note.filter(id=note_id).select_for_update().first()
            if note is not None and (note.user_id != user_id or note.deleted_at):
                raise not_found("note", field="input.noteId")
        if note is None:
            if topic_id is None:
                raise invalid("topicId is needed to create a note.", field="input.topicId")
            await topic_with_access(user_id, topic_id)
            try:
                note = await Note.create(
                    id=note_id or uuid.uuid4(), user_id=user_id, topic_id=topic_id, body=text
                )
            except IntegrityError:
                raise invalid("That note id is taken.", field="input.noteId") from None
            await _stamp_note(user_id, note)
            return _note_record(note)
        if expected_version is not None and note.version != expected_version:
            raise DomainError(
                ErrorCode.VERSION_CONFLICT,
                f"The note changed since version {expected_version}; it is now at version "
                f"{note.version}.",
                field="input.expectedVersion",
                current_version=note.version,
            )
        note.body = text
        note.version += 1
        await note.save(update_fields=["body", "version", "updated_at"])
        await _stamp_note(user_id, note)
        return _note_record(note)


async def _stamp_note(user_id: uuid.UUID, note: Note) -> None:
    await scopes.stamp(scopes.user_scope(user_id), put=[("note", note.id, scopes.note_data(note))])


async def delete_note(user_id: uuid.UUID, note_id: uuid.UUID) -> uuid.UUID:
    async with scopes.transaction():
        await scopes.lock(scopes.user_scope(user_id))
        updated = await Note.filter(id=note_id, user_id=user_id, deleted_at=None).update(
            deleted_at=_now(), updated_at=_now()
        )
        if not updated:
            raise not_found("note", field="id")
        await scopes.stamp(scopes.user_scope(user_id), delete=[("note", note_id)])
    return note_id


async def set_bookmark(user_id: uuid.UUID, topic_id: uuid.UUID, bookmarked: bool) -> None:
    await topic_with_access(user_id, topic_id)
    scope = scopes.user_scope(user_id)
    async with scopes.transaction():
        # The scope's lock serializes the writers of this user's state.
        await scopes.lock(scope)
        if not bookmarked:
            if await Bookmark.filter(user_id=user_id, topic_id=topic_id).delete():
                await scopes.stamp(scope, delete=[("bookmark", topic_id)])
            return
        if await Bookmark.filter(user_id=user_id, topic_id=topic_id).exists():
            return
        # A concurrent bookmark of the same topic may win the unique index: the outcome is the same.
        with contextlib.suppress(IntegrityError):
            async with scopes.transaction():
                bookmark = await Bookmark.create(user_id=user_id, topic_id=topic_id)
            await scopes.stamp(scope, put=[("bookmark", topic_id, scopes.bookmark_data(bookmark))])


async def progress_by_topic_ids(
    user_id: uuid.UUID, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, ProgressRecord]:
    rows = await TopicProgress.filter(user_id=user_id, topic_id__in=list(ids)).values(
        *ProgressRecord.FIELDS
    )
    return {row["topic_id"]: ProgressRecord(**row) for row in rows}


async def bookmarked_topic_ids(user_id: uuid.UUID, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    rows = await Bookmark.filter(user_id=user_id, topic_id__in=list(ids)).values_list(
        "topic_id", flat=True
    )
    return set(rows)  # type: ignore[arg-type]


async def notes_by_topic_ids(
    user_id: uuid.UUID, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[NoteRecord]]:
    grouped: dict[uuid.UUID, list[NoteRecord]] = defaultdict(list)
    rows = (
        await Note.filter(user_id=user_id, topic_id__in=list(ids), deleted_at=None)
        .order_by("created_at", "id")
        .values(*NoteRecord.FIELDS)
    )
    for row in rows:
        grouped[row["topic_id"]].append(NoteRecord(**row))
    return grouped
