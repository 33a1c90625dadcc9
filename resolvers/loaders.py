"""Dataloaders, created once per request and named for what they load.

Each turns the keys gathered in one tick of the executor into one SQL statement, so a page of
courses with their whole syllabus costs the same few statements for 1 course or 100.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from strawberry.dataloader import DataLoader

from services import course_reads, learning
from services.records import (
    CourseRecord,
    MemberRecord,
    NoteRecord,
    ProgressRecord,
    SubjectRecord,
    TopicRecord,
    UserRecord,
)

K = TypeVar("K")
V = TypeVar("V")


def _keyed(
    fetch: Callable[[list[uuid.UUID]], Awaitable[dict[uuid.UUID, V]]], default: Callable[[], V]
) -> Callable[[Sequence[uuid.UUID]], Awaitable[list[V]]]:
    async def load(keys: Sequence[uuid.UUID]) -> list[V]:
        found = await fetch(list(keys))
        return [found.get(key, default()) for key in keys]

    return load


class CourseByIdLoader(DataLoader[uuid.UUID, CourseRecord | None]):
    def __init__(self, viewer_id: uuid.UUID) -> None:
        async def fetch(ids: list[uuid.UUID]) -> dict[uuid.UUID, CourseRecord | None]:
            return dict(await course_reads.courses_by_ids(viewer_id, ids))

        super().__init__(load_fn=_keyed(fetch, lambda: None))


class SubjectsByCourseIdLoader(DataLoader[uuid.UUID, list[SubjectRecord]]):
    def __init__(self) -> None:
        super().__init__(load_fn=_keyed(course_reads.subjects_by_course_ids, list))


class TopicsBySubjectIdLoader(DataLoader[uuid.UUID, list[TopicRecord]]):
    def __init__(self) -> None:
        super().__init__(load_fn=_keyed(course_reads.topics_by_subject_ids, list))


class MembersByCourseIdLoader(DataLoader[uuid.UUID, list[MemberRecord]]):
    def __init__(self) -> None:
        super().__init__(load_fn=_keyed(course_reads.members_by_course_ids, list))


class UserByIdLoader(DataLoader[uuid.UUID, UserRecord | None]):
    def __init__(self) -> None:
        async def fetch(ids: list[uuid.UUID]) -> dict[uuid.UUID, UserRecord | None]:
            return dict(await course_reads.users_by_ids(ids))

        super().__init__(load_fn=_keyed(fetch, lambda: None))


class ProgressByTopicIdLoader(DataLoader[uuid.UUID, ProgressRecord | None]):
    """The viewer's own progress on each topic."""

    def __init__(self, viewer_id: uuid.UUID) -> None:
        async def fetch(ids: list[uuid.UUID]) -> dict[uuid.UUID, ProgressRecord | None]:
            return dict(await learning.progress_by_topic_ids(viewer_id, ids))

        super().__init__(load_fn=_keyed(fetch, lambda: None))


class BookmarkedByTopicIdLoader(DataLoader[uuid.UUID, bool]):
    """Whether the viewer bookmarked each topic."""

    def __init__(self, viewer_id: uuid.UUID) -> None:
        async def load(keys: Sequence[uuid.UUID]) -> list[bool]:
            marked = await learning.bookmarked_topic_ids(viewer_id, keys)
            return [key in marked for key in keys]

        super().__init__(load_fn=load)


class NotesByTopicIdLoader(DataLoader[uuid.UUID, list[NoteRecord]]):
    """The viewer's own notes on each topic."""

    def __init__(self, viewer_id: uuid.UUID) -> None:
        async def fetch(ids: list[uuid.UUID]) -> dict[uuid.UUID, list[NoteRecord]]:
            return dict(await learning.notes_by_topic_ids(viewer_id, ids))

        super().__init__(load_fn=_keyed(fetch, list))


class Loaders:
    """The request's loaders; viewer-specific ones only exist for an authenticated viewer."""

    def __init__(self, viewer_id: uuid.UUID | None) -> None:
        self.subjects_by_course_id = SubjectsByCourseIdLoader()
        self.topics_by_subject_id = TopicsBySubjectIdLoader()
        self.members_by_course_id = MembersByCourseIdLoader()
        self.user_by_id = UserByIdLoader()
        # A sentinel id sees nothing, so anonymous requests cannot load private rows.
        viewer = viewer_id or uuid.UUID(int=0)
        self.course_by_id = CourseByIdLoader(viewer)
        self.progress_by_topic_id = ProgressByTopicIdLoader(viewer)
        self.bookmarked_by_topic_id = BookmarkedByTopicIdLoader(viewer)
        self.notes_by_topic_id = NotesByTopicIdLoader(viewer)
