"""An offline, deterministic course writer: the provider used when no model endpoint is set.

It says what it is (`MODEL_NAME`): plausible structured outlines and Markdown topic content
built from the request alone, the same request always giving the same course. It lets the
service run, demo and be tested with no network and no keys.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

MODEL_NAME = "offline-course-writer"

_SUBJECT_PATTERNS = [
    "Foundations of {topic}",
    "Core ideas in {topic}",
    "Working with {topic} in practice",
    "Common patterns in {topic}",
    "Tools and workflows for {topic}",
    "Pitfalls and how to avoid them",
    "{topic} in real projects",
    "Measuring and improving your {topic} work",
    "Advanced techniques in {topic}",
    "Putting {topic} together",
    "Reviewing and extending {topic}",
    "Where to go next with {topic}",
]
_TOPIC_PATTERNS = [
    "What {subject} means",
    "Key vocabulary",
    "A first worked example",
    "Reading and interpreting results",
    "Step-by-step exercise",
    "Common mistakes",
    "Choosing the right approach",
    "A guided mini-project",
    "Checking your understanding",
    "Trade-offs and alternatives",
    "Case study",
    "Summary and next steps",
]


@dataclass(frozen=True, slots=True)
class CourseRequest:
    topic: str
    audience: str = "curious learners"
    level: str = "beginner"
    language: str = "en"
    subject_count: int = 4
    topics_per_subject: int = 4


@dataclass(slots=True)
class OutlineSubject:
    title: str
    summary: str
    topics: list[str] = field(default_factory=list)


def _rng(*parts: str) -> random.Random:
    seed = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return random.Random(int.from_bytes(seed[:8], "big"))


def write_outline(request: CourseRequest) -> list[OutlineSubject]:
    """Subjects with their topic titles, in order."""
    rng = _rng("outline", request.topic, request.level, request.audience)
    patterns = rng.sample(_SUBJECT_PATTERNS, k=min(request.subject_count, len(_SUBJECT_PATTERNS)))
    subjects = []
    for index, pattern in enumerate(patterns, start=1):
        title = pattern.format(topic=request.topic)
        topic_patterns = rng.sample(
            _TOPIC_PATTERNS, k=min(request.topics_per_subject, len(_TOPIC_PATTERNS))
        )
        subjects.append(
            OutlineSubject(
                title=f"{index}. {title}",
                summary=(
                    f"Part {index} of a {request.level} course on {request.topic} for "
                    f"{request.audience}."
                ),
                topics=[p.format(subject=title.lower()) for p in topic_patterns],
            )
        )
    return subjects


def write_topic(request: CourseRequest, subject: str, topic: str) -> tuple[str, list[str], int]:
    """Markdown content, learning objectives and estimated minutes for one topic."""
    rng = _rng("topic", request.topic, request.level, subject, topic)
    minutes = rng.choice([10, 15, 20, 25, 30])
    objectives = [
        f"Explain {topic.lower()} in your own words",
        f"Apply it to a small {request.topic} problem",
        f"Recognise when it matters for {request.audience}",
    ][: rng.randint(2, 3)]
    body = "\n".join(
        [
            f"## {topic}",
            "",
            f"*{subject}* — a {request.level} lesson on **{request.topic}** for "
            f"{request.audience}. (Written offline by `{MODEL_NAME}`.)",
            "",
            "### Why it matters",
            f"Most work with {request.topic} touches this idea sooner or later. Knowing it well "
            "saves time and avoids subtle mistakes.",
            "",
            "### Walk-through",
            *[f"{n}. Step {n}: look at the example, predict the result, then check it."
              for n in range(1, rng.randint(3, 5) + 1)],
            "",
            "### Try it",
            f"Take a small example from your own {request.topic} work and apply the steps above.",
        ]
    )
    return body, objectives, minutes
