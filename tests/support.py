"""Helpers shared by the tests: GraphQL calls, users, course trees, SQL statement counting."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from models import Course, CourseStatus, Subject, Topic
from services.ranks import rank_after
from settings import Settings

ROOT = Path(__file__).resolve().parent.parent


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """POST a GraphQL operation; returns the whole JSON body."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) {
    __typename
    ... on AuthSuccess { accessToken refreshToken expiresIn user { id email displayName tier role } }
    ... on UserError { code message field }
  }
}
"""


@dataclass
class TestUser:
    id: uuid.UUID
    email: str
    token: str
    refresh_token: str
    password: str = "correct horse battery staple"


async def sign_up(client: httpx.AsyncClient, email: str | None = None) -> TestUser:
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    password = "correct horse battery staple"
    body = await gql(
        client,
        SIGN_UP,
        {"input": {"email": email, "password": password, "displayName": email.split("@")[0]}},
    )
    result = body["data"]["signUp"]
    assert result["__typename"] == "AuthSuccess", body
    return TestUser(
        id=uuid.UUID(result["user"]["id"]),
        email=email,
        token=result["accessToken"],
        refresh_token=result["refreshToken"],
        password=password,
    )


@dataclass
class Tree:
    course_id: uuid.UUID
    subject_ids: list[uuid.UUID] = field(default_factory=list)
    topic_ids: list[uuid.UUID] = field(default_factory=list)


async def make_course(
    owner_id: uuid.UUID, title: str = "A course", subjects: int = 2, topics: int = 3
) -> Tree:
    """A ready course with a syllabus, written straight to the database (fast set-up)."""
    course = await Course.create(owner_id=owner_id, title=title, status=CourseStatus.READY)
    tree = Tree(course_id=course.id)
    subject_rank = None
    for s in range(subjects):
        subject_rank = rank_after(subject_rank)
        subject = await Subject.create(
            course_id=course.id, rank=subject_rank, title=f"Subject {s}", summary=""
        )
        tree.subject_ids.append(subject.id)
        topic_rank = None
        rows = []
        for t in range(topics):
            topic_rank = rank_after(topic_rank)
            rows.append(
                Topic(
                    id=uuid.uuid4(),
                    subject_id=subject.id,
                    course_id=course.id,
                    rank=topic_rank,
                    title=f"Topic {s}.{t}",
                    content="Some content",
                )
            )
        await Topic.bulk_create(rows)
        tree.topic_ids.extend(row.id for row in rows)
    return tree


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # Tortoise logs each statement it sends; connection set-up lines are not statements.
        if not message.startswith(("Created connection", "Closed connection")):
            self.statements.append(message)


@contextmanager
def count_statements() -> Iterator[list[str]]:
    """Collect every SQL statement Tortoise sends while the block runs."""
    # Tortoise's own statements, and the plain-SQL reads of the fast path (services/tree_reads).
    loggers = [logging.getLogger("tortoise.db_client"), logging.getLogger("coursegen.sql")]
    handler = _Counter()
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler.statements
    finally:
        for logger, level in zip(loggers, previous, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def spawn_worker(
    settings: Settings,
    redis_url: str,
    latency_ms: int,
    workers: int = 2,
    extra: dict[str, str] | None = None,
    log_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """A real `manage.py worker` process on the test database and Redis (idle claim 1 s);
    its log goes to `log_file` when given, else nowhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSEGEN_")}
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=settings.resolved_database_url,
        REDIS_URL=redis_url,
        SECRET_KEY=str(settings.secret_key),
        COURSEGEN_ENV="test",
        COURSEGEN_OFFLINE_LATENCY_MS=str(latency_ms),
        GENERATION_WORKERS=str(workers),
        GENERATION_CLAIM_IDLE_SECONDS="1",
    )
    env.update(extra or {})
    stderr: Any = log_file.open("ab") if log_file is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "manage.py", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    finally:
        if log_file is not None:
            stderr.close()  # the child has its own descriptor
