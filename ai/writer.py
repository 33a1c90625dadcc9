"""What the generation pipeline asks of a course writer, whatever model (or none) is behind it.

`CourseWriter` is the seam: the offline deterministic writer and the routed writer (OpenAI-
compatible endpoints through the router) both implement it. Every call books its tokens and
cost into the job's `Usage`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from pydantic import BaseModel, Field


@dataclass(frozen=True, slots=True)
class CourseRequest:
    """A validated request for a course; its text is data to quote, never instructions."""

    topic: str
    audience: str = "curious learners"
    level: str = "beginner"
    language: str = "en"
    subject_count: int = 4
    topics_per_subject: int = 4
    notes: str = ""


@dataclass(frozen=True, slots=True)
class Requester:
    """Whose budget a call is charged to, and the tier that steers model choice."""

    user_id: uuid.UUID
    tier: str


@dataclass(slots=True)
class ModelTally:
    """What one job's calls to one model endpoint used."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal(0)


@dataclass(slots=True)
class Usage:
    """Running accounting of one job: every attempt's tokens and cost, by model."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal(0)
    calls: int = 0
    attempts: int = 0
    models: set[str] = field(default_factory=set)
    # True once any response came without usage and its cost had to be estimated.
    estimated: bool = False
    # The same figures per model endpoint, for the usage ledger (models/usage.py).
    by_model: dict[str, ModelTally] = field(default_factory=dict)

    def add(
        self,
        model: str,
        tokens_in: int,
        tokens_out: int,
        cost_usd: Decimal,
        *,
        estimated: bool = False,
    ) -> None:
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.cost_usd += cost_usd
        self.calls += 1
        self.models.add(model)
        self.estimated = self.estimated or estimated
        tally = self.by_model.get(model)
        if tally is None:
            tally = self.by_model[model] = ModelTally()
        tally.calls += 1
        tally.tokens_in += tokens_in
        tally.tokens_out += tokens_out
        tally.cost_usd += cost_usd


class OutlineSubject(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    summary: str = Field(default="", max_length=2000)
    topics: list[str] = Field(min_length=1, max_length=12)


class Outline(BaseModel):
    subjects: list[OutlineSubject] = Field(min_length=1, max_length=12)


class TopicContent(BaseModel):
    content: str = Field(min_length=1, max_length=100_000)
    objectives: list[str] = Field(default_factory=list, max_length=10)
    estimated_minutes: int = Field(default=15, ge=1, le=600)


class CourseWriter(Protocol):
    """Writes a course in two kinds of call: the outline, then each topic."""

    name: str

    async def write_outline(
        self, request: CourseRequest, requester: Requester, usage: Usage
    ) -> Outline: ...

    async def write_topic(
        self,
        request: CourseRequest,
        subject: str,
        topic: str,
        requester: Requester,
        usage: Usage,
    ) -> TopicContent: ...

    async def remaining_budget(self, requester: Requester) -> Decimal | None:
        """USD the requester may still spend today and this month; None: no limit."""
        ...

    async def aclose(self) -> None: ...
