"""One mutator per intent, each with its conflict rule (sync-protocol.md, "Conflict rules").

Mutators reuse the domain services of the web API (validation, permissions, the write itself and
its scope stamp live there, in one place); what they add is the rule that decides whether and
how an offline intent still applies to today's state.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from models import Course, Note, Topic
from services import courses, learning, scopes
from services.accounts import Viewer
from services.errors import DomainError, ErrorCode, invalid
from services.permissions import course_access
from services.validation import clean_text, parse_id
from sync.hlc import Hlc, newer

CONFLICT_NAMESPACE = uuid.UUID("5b7f4c1e-2f1d-4b4e-9d0c-0c5a1f3e8a11")
SUPERSEDED = "SUPERSEDED"

Touched = tuple[str, str, str]  # (scope, type, id): rows whose canonical state to send back


@dataclass(slots=True)
class MutationContext:
    viewer: Viewer
    group_id: str
    client_id: str
    mutation_id: int
    hlc: Hlc
    base_version: int | None


@dataclass(slots=True)
class Outcome:
    status: str = "APPLIED"
    code: str | None = None
    message: str | None = None
    data: dict[str, Any] | None = None
    touched: list[Touched] = field(default_factory=list)
    conflict: bool = False  # kept in the conflict log (a merge)


class Rejected(Exception):
    """A permanent failure of one mutation: REJECTED with `code`, its intent archived."""

    def __init__(self, code: str, message: str, touched: list[Touched] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.touched = touched or []


Mutator = Callable[[MutationContext, dict[str, Any]], Awaitable[Outcome]]


def _args(raw: Any, required: set[str], optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise invalid("args: a JSON object.", "args")
    unknown = set(raw) - required - optional
    if unknown:
        raise invalid(f"args: unknown field {sorted(unknown)[0]}.", f"args.{sorted(unknown)[0]}")
    missing = required - set(raw)
    if missing:
        raise invalid(f"args: {sorted(missing)[0]} is required.", f"args.{sorted(missing)[0]}")
    return raw


def _id(args: dict[str, Any], name: str) -> uuid.UUID:
    return parse_id(args[name], f"args.{name}")


def _text(args: dict[str, Any], name: str) -> str:
    value = args[name]
    if not isinstance(value, str):
        raise invalid(f"args.{name}: a string.", f"args.{name}")
    return value


async def _why_not(course_id: uuid.UUID) -> Rejected:
    """A course the user cannot reach: gone for good, deleted, or no longer shared with it."""
    row = await Course.filter(id=course_id).values("deleted_at")
    if not row:
        return Rejected(ErrorCode.NOT_FOUND, "No course with that id.")
    if row[0]["deleted_at"] is not None:
        return Rejected(
            ErrorCode.ENTITY_DELETED,
            "The course was deleted.",
            [(scopes.course_scope(course_id), "course", str(course_id))],
        )
    return Rejected(ErrorCode.FORBIDDEN, "You no longer have access to this course.")


async def _reach_course(
    ctx: MutationContext, course_id: uuid.UUID, *, lock: bool = False
) -> Course:
    try:
        course, _ = await course_access(course_id, ctx.viewer.id, for_update=lock)
    except DomainError as error:
        if error.code is ErrorCode.NOT_FOUND:
            raise await _why_not(course_id) from None
        raise
    return course


async def _topic_course(topic_id: uuid.UUID) -> uuid.UUID:
    rows = await Topic.filter(id=topic_id).values_list("course_id", flat=True)
    if not rows:
        raise Rejected(ErrorCode.NOT_FOUND, "No topic with that id.")
    value = rows[0]
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _superseded(touched: list[Touched], what: str) -> Outcome:
    return Outcome(code=SUPERSEDED, message=f"A later change of {what} won.", touched=touched)


# --- learning state (user scope) ----------------------------------------------------------------


async def _completion(ctx: MutationContext, args: dict[str, Any], completed: bool) -> Outcome:
    optional = frozenset({"score"}) if completed else frozenset()
    args = _args(args, {"topicId"}, optional)
    topic_id = _id(args, "topicId")
    score = args.get("score")
    if score is not None and (not isinstance(score, int) or isinstance(score, bool)):
        raise invalid("args.score: an integer from 0 to 100.", "args.score")
    await _reach_course(ctx, await _topic_course(topic_id))
    scope = scopes.user_scope(ctx.viewer.id)
    await scopes.lock(scope)
    touched = [(scope, "progress", str(topic_id))]
    clocks = await scopes.clocks_of(scope, "progress", topic_id)
    if not newer(ctx.hlc, clocks.get("completed")):
        return _superseded(touched, "this topic's completion")
    await learning.set_completion(ctx.viewer.id, topic_id, completed, score)
    await scopes.set_clocks(scope, "progress", topic_id, {"completed": str(ctx.hlc)}, clocks)
    return Outcome()


async def complete_topic(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    return await _completion(ctx, args, True)


async def uncomplete_topic(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    return await _completion(ctx, args, False)


async def _bookmark(ctx: MutationContext, args: dict[str, Any], add: bool) -> Outcome:
    """Add-wins: a removal removes only additions with an older clock (ones it could see)."""
    topic_id = _id(_args(args, {"topicId"}), "topicId")
    await _reach_course(ctx, await _topic_course(topic_id))
    scope = scopes.user_scope(ctx.viewer.id)
    await scopes.lock(scope)
    touched = [(scope, "bookmark", str(topic_id))]
    clocks = await scopes.clocks_of(scope, "bookmark", topic_id)
    added = clocks.get("add")
    if add:
        await learning.set_bookmark(ctx.viewer.id, topic_id, True)
        if newer(ctx.hlc, added):
            await scopes.set_clocks(scope, "bookmark", topic_id, {"add": str(ctx.hlc)}, clocks)
        return Outcome()
    if not newer(ctx.hlc, added):
        return _superseded(touched, "this bookmark (an addition wins)")
    await learning.set_bookmark(ctx.viewer.id, topic_id, False)
    return Outcome()


async def bookmark_topic(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    return await _bookmark(ctx, args, True)


async def unbookmark_topic(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    return await _bookmark(ctx, args, False)


async def _own_note(ctx: MutationContext, note_id: uuid.UUID) -> Note | None:
    note = await Note.filter(id=note_id).first()
    if note is not None and note.user_id != ctx.viewer.id:
        raise Rejected(ErrorCode.NOT_FOUND, "No note with that id.")
    return note


def _note_touch(ctx: MutationContext, note_id: uuid.UUID) -> Touched:
    return (scopes.user_scope(ctx.viewer.id), "note", str(note_id))


async def create_note(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    args = _args(args, {"noteId", "topicId", "body"})
    note_id, topic_id, body = _id(args, "noteId"), _id(args, "topicId"), _text(args, "body")
    await scopes.lock(scopes.user_scope(ctx.viewer.id))
    note = await _own_note(ctx, note_id)
    if note is not None:  # created before: the same intent again
        if note.deleted_at is not None:
            raise Rejected(
                ErrorCode.ENTITY_DELETED, "The note was deleted.", [_note_touch(ctx, note_id)]
            )
        return Outcome(touched=[_note_touch(ctx, note_id)])
    await _reach_course(ctx, await _topic_course(topic_id))
    await learning.save_note(ctx.viewer.id, body=body, topic_id=topic_id, note_id=note_id)
    return Outcome()


async def save_note(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    """Applied on the version it was based on; otherwise both texts are kept (a conflict copy)."""
    args = _args(args, {"noteId", "body"})
    note_id, body = _id(args, "noteId"), _text(args, "body")
    await scopes.lock(scopes.user_scope(ctx.viewer.id))
    note = await _own_note(ctx, note_id)
    if note is None:
        raise Rejected(ErrorCode.NOT_FOUND, "No note with that id.")
    touched = [_note_touch(ctx, note_id)]
    if note.deleted_at is not None:
        raise Rejected(ErrorCode.ENTITY_DELETED, "The note was deleted.", touched)
    if ctx.base_version == note.version:
        await learning.save_note(
            ctx.viewer.id, body=body, note_id=note_id, expected_version=note.version
        )
        return Outcome()
    if clean_text(body) == note.body:
        return Outcome(touched=touched)  # the same text: nothing to merge
    copy_id = uuid.uuid5(
        CONFLICT_NAMESPACE, f"{note_id}/{ctx.group_id}/{ctx.client_id}/{ctx.mutation_id}"
    )
    await _reach_course(ctx, await _topic_course(note.topic_id))
    await learning.save_note(ctx.viewer.id, body=body, topic_id=note.topic_id, note_id=copy_id)
    return Outcome(
        status="MERGED",
        code="CONFLICT_COPY",
        message=(
            f"The note changed since version {ctx.base_version}; your text was kept as a "
            "separate note."
        ),
        data={"conflictNoteId": str(copy_id)},
        touched=[*touched, _note_touch(ctx, copy_id)],
        conflict=True,
    )


async def delete_note(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    note_id = _id(_args(args, {"noteId"}), "noteId")
    await scopes.lock(scopes.user_scope(ctx.viewer.id))
    note = await _own_note(ctx, note_id)
    if note is None:
        raise Rejected(ErrorCode.NOT_FOUND, "No note with that id.")
    if note.deleted_at is None:
        await learning.delete_note(ctx.viewer.id, note_id)
    return Outcome()


# --- the course aggregate (course scope) ---------------------------------------------------------


async def _fields_lww(
    ctx: MutationContext,
    course: Course,
    kind: str,
    ident: uuid.UUID,
    changes: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, str]]:
    """The fields of `changes` whose clock is newer than their last writer's, and the clocks."""
    scope = scopes.course_scope(course.id)
    await scopes.lock(scope)
    clocks = await scopes.clocks_of(scope, kind, ident)
    winning = {name: value for name, value in changes.items() if newer(ctx.hlc, clocks.get(name))}
    return winning, clocks


async def _update_course(ctx: MutationContext, args: dict[str, Any], names: set[str]) -> Outcome:
    course_id = _id(args, "courseId")
    course = await _reach_course(ctx, course_id, lock=True)
    changes = {name: args[name] for name in names if name in args}
    winning, clocks = await _fields_lww(ctx, course, "course", course_id, changes)
    touched = [(scopes.course_scope(course_id), "course", str(course_id))]
    if not winning:
        if changes:
            return _superseded(touched, "these fields")
        return Outcome()
    await courses.update_course(ctx.viewer.id, course_id, winning, course.version)
    await scopes.set_clocks(
        scopes.course_scope(course_id),
        "course",
        course_id,
        dict.fromkeys(winning, str(ctx.hlc)),
        clocks,
    )
    if len(winning) < len(changes):
        return Outcome(code="PARTIAL", message="Later changes of some fields won.", touched=touched)
    return Outcome()


async def rename_course(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    return await _update_course(ctx, _args(args, {"courseId", "title"}), {"title"})


async def update_course_details(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    names = {"description", "level", "language"}
    return await _update_course(ctx, _args(args, {"courseId"}, frozenset(names)), names)


async def rename_topic(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    args = _args(args, {"topicId", "title"})
    topic_id = _id(args, "topicId")
    course = await _reach_course(ctx, await _topic_course(topic_id), lock=True)
    winning, clocks = await _fields_lww(ctx, course, "topic", topic_id, {"title": args["title"]})
    touched = [(scopes.course_scope(course.id), "topic", str(topic_id))]
    if not winning:
        return _superseded(touched, "this topic's title")
    await courses.update_topic(ctx.viewer.id, topic_id, winning)
    await scopes.set_clocks(
        scopes.course_scope(course.id), "topic", topic_id, {"title": str(ctx.hlc)}, clocks
    )
    return Outcome()


async def move_topic(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    """The intent (after/before a sibling) applied to today's order; of two moves of one topic
    the later clock wins. An anchor that has left the subject meanwhile: the topic goes last."""
    args = _args(args, {"topicId", "subjectId"}, frozenset({"after", "before"}))
    topic_id, subject_id = _id(args, "topicId"), _id(args, "subjectId")
    after = parse_id(args["after"], "args.after") if args.get("after") is not None else None
    before = parse_id(args["before"], "args.before") if args.get("before") is not None else None
    course = await _reach_course(ctx, await _topic_course(topic_id), lock=True)
    winning, clocks = await _fields_lww(ctx, course, "topic", topic_id, {"position": True})
    touched = [(scopes.course_scope(course.id), "topic", str(topic_id))]
    if not winning:
        return _superseded(touched, "this topic's place")
    raw_ids = (
        await Topic.filter(subject_id=subject_id).exclude(id=topic_id).values_list("id", flat=True)
    )
    siblings: set[uuid.UUID] = {
        value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)) for value in raw_ids
    }
    if after is not None and after not in siblings:
        after = None
    if before is not None and (before not in siblings or after is not None):
        before = None
    await courses.move_topic(ctx.viewer.id, topic_id, subject_id, after, before)
    await scopes.set_clocks(
        scopes.course_scope(course.id), "topic", topic_id, {"position": str(ctx.hlc)}, clocks
    )
    return Outcome()


async def create_course(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    names = {"description", "level", "language"}
    args = _args(args, {"courseId", "title"}, frozenset(names))
    course_id = _id(args, "courseId")
    existing = await Course.filter(id=course_id).first()
    if existing is not None:
        if existing.owner_id != ctx.viewer.id:
            raise invalid("args.courseId: that id is taken; make a new one.", "args.courseId")
        if existing.deleted_at is not None:
            raise await _why_not(course_id)
        return Outcome()  # created before: the same intent again
    data = {name: args[name] for name in ("title", *sorted(names)) if name in args}
    await courses.create_course(ctx.viewer.id, data, course_id)
    return Outcome()


async def delete_course(ctx: MutationContext, args: dict[str, Any]) -> Outcome:
    course_id = _id(_args(args, {"courseId"}), "courseId")
    existing = await Course.filter(id=course_id).first()
    if (
        existing is not None
        and existing.deleted_at is not None
        and existing.owner_id == ctx.viewer.id
    ):
        return Outcome()  # deleted before
    await _reach_course(ctx, course_id)
    await courses.delete_course(ctx.viewer.id, course_id)
    return Outcome()


MUTATORS: dict[str, Mutator] = {
    "completeTopic": complete_topic,
    "uncompleteTopic": uncomplete_topic,
    "bookmarkTopic": bookmark_topic,
    "unbookmarkTopic": unbookmark_topic,
    "renameCourse": rename_course,
    "updateCourseDetails": update_course_details,
    "renameTopic": rename_topic,
    "moveTopic": move_topic,
    "createNote": create_note,
    "saveNote": save_note,
    "deleteNote": delete_note,
    "createCourse": create_course,
    "deleteCourse": delete_course,
}
GENERATION = "requestCourseGeneration"
NAMES = frozenset({*MUTATORS, GENERATION})
