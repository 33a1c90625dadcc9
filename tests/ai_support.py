"""Fixtures and helpers shared by the AI router tests (loaded by tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ai.routed_writer import RoutedCourseWriter
from ai.router import Router
from ai.writer import CourseRequest, Requester, TopicContent, Usage
from tests.fake_openai import FakeOpenAI, endpoint, router_config, running

REQUEST = CourseRequest(topic="Linear algebra", audience="data scientists")
Build = Callable[..., RoutedCourseWriter]


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    """The fake OpenAI-compatible server, one per test module."""
    async with running() as pair:
        yield pair


@pytest.fixture
def fake(server: tuple[FakeOpenAI, str]) -> FakeOpenAI:
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[FakeOpenAI, str]) -> str:
    return server[1]


@pytest.fixture
async def build(url: str) -> AsyncIterator[Build]:
    """Makes routed writers on in-process state (model "a" at the fake by default)."""
    made: list[RoutedCourseWriter] = []

    def _build(models: list[dict[str, Any]] | None = None, **policy: Any) -> RoutedCourseWriter:
        config = router_config(models or [endpoint("a", url)], **policy)
        writer = RoutedCourseWriter(Router.from_config(config))
        made.append(writer)
        return writer

    yield _build
    for writer in made:
        await writer.aclose()


def who(tier: str = "standard") -> Requester:
    return Requester(uuid.uuid4(), tier)


async def topic(writer: RoutedCourseWriter, usage: Usage, name: str = "Vectors") -> TopicContent:
    return await writer.write_topic(REQUEST, "Basics", name, who(), usage)
