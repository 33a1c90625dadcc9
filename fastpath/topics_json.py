"""A subject's topics rendered by PostgreSQL: the JSON of each `topics` selection, built with
`json_build_object` / `json_agg` per subject, embedded in the response as is.

Topics are the bulk of a course page (960 of the dashboard's 1,140 objects): building their
dicts in Python cost more than everything else the fast path does. Here each distinct
`topics { … }` selection becomes one aggregate column of one statement (one row per subject),
keyed by the selection's response keys, with the values formatted as the normal executor
formats them (ids as their text, timestamps exactly as Python's `isoformat()` in UTC). Which
topics, in which order, and whose progress, bookmarks and notes come with them is the
reader's business (services/tree_reads.py `TopicJSON`); this module only writes the
SELECT expressions from the fields.

Each aggregate comes with the number of objects it holds (topics, progress objects, notes),
which the cost calculator would count in the response (fastpath/codegen.py adds it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastpath.compile import Field
from fastpath.plan import Unsupported
from services.tree_reads import TopicJSON

_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")
# json_build_object takes at most 100 arguments: 50 keys.
MAX_KEYS = 50

TOPIC = {
    "id": "x.id",
    "subjectId": "x.subject_id",
    "courseId": "x.course_id",
    "position": "x.position",
    "title": "x.title",
    "objectives": "x.objectives",
    "content": "x.content",
    "estimatedMinutes": "x.estimated_minutes",
    "bookmarked": TopicJSON.BOOKMARKED,
}
PROGRESS = {
    "completed": "x.completed",
    "completedAt": TopicJSON.iso("x.completed_at"),
    "score": "x.score",
}
NOTE = {
    "id": "n.id",
    "topicId": "n.topic_id",
    "body": "n.body",
    "version": "n.version",
    "createdAt": TopicJSON.iso("n.created_at"),
    "updatedAt": TopicJSON.iso("n.updated_at"),
}
# The topic columns each field reads (the reader selects only those).
COLUMNS = {
    "id": "id",
    "subjectId": "subject_id",
    "courseId": "course_id",
    "title": "title",
    "objectives": "objectives",
    "content": "content",
    "estimatedMinutes": "estimated_minutes",
}


@dataclass(frozen=True, slots=True)
class TopicsQuery:
    aggregates: list[str]  # per selection: its JSON array, then its object count
    columns: frozenset[str]
    progress: bool


def shape(fields: list[Field] | None) -> tuple[object, ...]:
    if fields is None:
        return ()
    return tuple((f.key, f.name, f.type_name, shape(f.children)) for f in fields)


def topic_selections(fields: list[Field]) -> list[list[Field]]:
    """The distinct `Subject.topics` selections of a request, in a fixed order."""
    found: dict[tuple[object, ...], list[Field]] = {}

    def walk(items: list[Field], type_name: str) -> None:
        for f in items:
            if f.children is None:
                continue
            if type_name == "Subject" and f.name == "topics":
                found.setdefault(shape(f.children), f.children)
            else:
                walk(f.children, f.type_name)

    walk(fields, "Query")
    return list(found.values())


def topics_query(selections: list[list[Field]]) -> TopicsQuery:
    aggregates: list[str] = []
    columns: set[str] = {"id", "subject_id", "rank"}
    progress = False
    for fields in selections:
        obj, counts, used, joins_progress = _topic(fields)
        columns |= used
        progress |= joins_progress
        aggregates.append(f"json_agg({obj} ORDER BY x.position)::text")
        aggregates.append("(" + " + ".join(["count(*)", *counts]) + ")::bigint")
    return TopicsQuery(aggregates=aggregates, columns=frozenset(columns), progress=progress)


def _object(pairs: list[tuple[str, str]]) -> str:
    if len(pairs) > MAX_KEYS:
        raise Unsupported("too many keys")
    for key, _ in pairs:
        if not _NAME.match(key):  # GraphQL names only; validated before, checked again
            raise Unsupported("key")
    return "json_build_object(" + ", ".join(f"'{key}', {value}" for key, value in pairs) + ")"


def _topic(fields: list[Field]) -> tuple[str, list[str], set[str], bool]:
    pairs: list[tuple[str, str]] = []
    counts: list[str] = []
    columns: set[str] = set()
    progress = False
    for f in fields:
        if f.name == "__typename":
            pairs.append((f.key, "'Topic'"))
        elif f.name == "progress":
            progress = True
            inner = _leaves(f.children or [], PROGRESS, "Progress")
            pairs.append((f.key, f"CASE WHEN {TopicJSON.HAS_PROGRESS} THEN {inner} END"))
            counts.append(f"count(*) FILTER (WHERE {TopicJSON.HAS_PROGRESS})")
        elif f.name == "notes":
            inner = _leaves(f.children or [], NOTE, "Note")
            pairs.append((f.key, TopicJSON.notes(inner)))
            counts.append(f"coalesce(sum({TopicJSON.NOTES_COUNT}), 0)")
        else:
            pairs.append((f.key, TOPIC[f.name]))
            if f.name in COLUMNS:
                columns.add(COLUMNS[f.name])
    return _object(pairs), counts, columns, progress


def _leaves(fields: list[Field], templates: dict[str, str], type_name: str) -> str:
    return _object(
        [(f.key, f"'{type_name}'" if f.name == "__typename" else templates[f.name]) for f in fields]
    )
