"""Field resolvers of the course tree: every nested read goes through a request loader."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strawberry.types.nodes import SelectedField

from services.errors import DomainError, ErrorCode
from services.permissions import Access
from services.records import (
    CourseRecord,
    MemberRecord,
    NoteRecord,
    ProgressRecord,
    SubjectRecord,
    TopicRecord,
    UserRecord,
)

if TYPE_CHECKING:
    from strawberry.types import Info

    from resolvers.context import RequestContext


def _context(info: Info) -> RequestContext:
    return info.context


async def subjects(info: Info, course: CourseRecord) -> list[SubjectRecord]:
    return await _context(info).loaders.subjects_by_course_id.load(course.id)


async def topics(info: Info, subject: SubjectRecord) -> list[TopicRecord]:
    return await _context(info).loaders.topics_by_subject_id.load(subject.id)


async def members(info: Info, course: CourseRecord) -> list[MemberRecord]:
    return await _context(info).loaders.members_by_course_id.load(course.id)


async def user(info: Info, user_id: uuid.UUID) -> UserRecord:
    record = await _context(info).loaders.user_by_id.load(user_id)
    if record is None:  # a foreign key guarantees it; a miss is a bug, not a client error
        raise LookupError(f"user {user_id} missing")
    return record


async def access(info: Info, course: CourseRecord) -> Access:
    viewer = _context(info).require_viewer()
    if course.owner_id == viewer.id:
        return Access.OWNER
    for member in await members(info, course):
        if member.user_id == viewer.id:
            return Access(member.role)
    raise DomainError(ErrorCode.NOT_FOUND, "No course with that id.")


async def progress(info: Info, topic: TopicRecord) -> ProgressRecord | None:
    return await _context(info).loaders.progress_by_topic_id.load(topic.id)


async def bookmarked(info: Info, topic: TopicRecord) -> bool:
    return await _context(info).loaders.bookmarked_by_topic_id.load(topic.id)


async def notes(info: Info, topic: TopicRecord) -> list[NoteRecord]:
    return await _context(info).loaders.notes_by_topic_id.load(topic.id)


@dataclass(slots=True)
class ViewerTopicState:
    progress: ProgressRecord | None
    bookmarked: bool
    notes: list[NoteRecord]


_STATE_FIELDS = frozenset({"progress", "bookmarked", "notes"})


def _selected_names(selections: list[Any]) -> set[str]:
    names: set[str] = set()
    for selection in selections:
        if isinstance(selection, SelectedField):
            names.add(selection.name)
        else:  # a fragment: its own selections count
            names |= _selected_names(selection.selections)
    return names


async def viewer_states(info: Info, topics: list[TopicRecord]) -> list[ViewerTopicState | None]:
    """The viewer's state of each topic, when the query asks for any of it; else Nones.

    Called from every subject's `topics` in the same tick, the loaders batch all of a page's
    topics into one statement each.
    """
    wanted = _selected_names(info.selected_fields[0].selections) & _STATE_FIELDS
    if not wanted or not topics:
        return [None] * len(topics)
    loaders = _context(info).loaders
    ids = [t.id for t in topics]
    progress, marked, notes = await asyncio.gather(
        loaders.progress_by_topic_id.load_many(ids) if "progress" in wanted else _nones(ids),
        loaders.bookmarked_by_topic_id.load_many(ids) if "bookmarked" in wanted else _falses(ids),
        loaders.notes_by_topic_id.load_many(ids) if "notes" in wanted else _empties(ids),
    )
    return [
        ViewerTopicState(progress=p, bookmarked=b, notes=n)
        for p, b, n in zip(progress, marked, notes, strict=True)
    ]


async def _nones(ids: list[uuid.UUID]) -> list[ProgressRecord | None]:
    return [None] * len(ids)


async def _falses(ids: list[uuid.UUID]) -> list[bool]:
    return [False] * len(ids)


async def _empties(ids: list[uuid.UUID]) -> list[list[NoteRecord]]:
    return [[] for _ in ids]
