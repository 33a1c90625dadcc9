"""An offline, deterministic course writer: the provider used when no model endpoint is set.

It says what it is (`MODEL_NAME`): plausible structured outlines and Markdown topic content
built from the request alone, the same request always giving the same course. It lets the
service run, demo and be tested with no network and no keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from decimal import Decimal

from ai.writer import CourseRequest, Outline, OutlineSubject, Requester, TopicContent, Usage

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


def _rng(*parts: str) -> random.Random:
    seed = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return random.Random(int.from_bytes(seed[:8], "big"))


def outline_for(request: CourseRequest) -> Outline:
    """Subjects with their topic titles, in order; the same request gives the same outline."""
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
                title=f"{index}. {title}"[:200],
                summary=(
                    f"Part {index} of a {request.level} course on {request.topic} for "
                    f"{request.audience}."
                )[:2000],
                topics=[p.format(subject=title.lower())[:200] for p in topic_patterns],
            )
        )
    return Outline(subjects=subjects)


def topic_for(request: CourseRequest, subject: str, topic: str) -> TopicContent:
    """Markdown content, learning objectives and estimated minutes for one topic."""
    rng = _rng("topic", request.topic, request.level, subject, topic)
    objectives = [
        f"Explain {topic.lower()} in your own words",
        f"Apply it to a small {request.topic} problem",
        f"Recognise when it matters for {request.audience}",
    ][: rng.randint(2, 3)]
    steps = [
        f"{n}. Step {n}: look at the example, predict the result, then check it."
        for n in range(1, rng.randint(3, 5) + 1)
    ]
    body = "\n".join(
        [
            f"## {topic}",
            "",
            f"*{subject}* - a {request.level} lesson on **{request.topic}** for "
            f"{request.audience}. (Written offline by `{MODEL_NAME}`.)",
            "",
            "### Why it matters",
            f"Most work with {request.topic} touches this idea sooner or later. Knowing it well "
            "saves time and avoids subtle mistakes.",
            "",
            "### Walk-through",
            *steps,
            "",
            "### Try it",
            f"Take a small example from your own {request.topic} work and apply the steps above.",
        ]
    )
    minutes = rng.choice([10, 15, 20, 25, 30])
    return TopicContent(content=body, objectives=objectives, estimated_minutes=minutes)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)  # the usual rough ratio; the offline writer costs nothing


class OfflineCourseWriter:
    """The embedded default `CourseWriter`, with an optional simulated latency per call."""

    name = MODEL_NAME

    def __init__(self, latency_seconds: float = 0.0) -> None:
        self.latency_seconds = latency_seconds

    async def remaining_budget(self, requester: Requester) -> Decimal | None:
        return None  # writing offline costs nothing

    async def aclose(self) -> None:
        return None

    async def _pause(self) -> None:
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)

    async def write_outline(
        self, request: CourseRequest, requester: Requester, usage: Usage
    ) -> Outline:
        await self._pause()
        outline = outline_for(request)
        usage.add(
            self.name, _tokens(request.topic) + 50, _tokens(outline.model_dump_json()), Decimal(0)
        )
        return outline

    async def write_topic(
        self,
        request: CourseRequest,
        subject: str,
        topic: str,
        requester: Requester,
        usage: Usage,
    ) -> TopicContent:
        await self._pause()
        content = topic_for(request, subject, topic)
        usage.add(self.name, _tokens(subject + topic) + 50, _tokens(content.content), Decimal(0))
        return content
