"""The dashboard query costs the same few SQL statements for a page of 1 course or 100."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette

from models import Bookmark, Note, TopicProgress
from tests.support import count_statements, gql, make_course, sign_up

DASHBOARD = """
query Dashboard($first: Int!) {
  courses(first: $first) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      cursor
      node {
        id title status version viewerAccess
        owner { id displayName }
        members { role user { id } }
        subjects {
          id title position
          topics {
            id title position estimatedMinutes
            progress { completed score }
            bookmarked
            notes { body }
          }
        }
      }
    }
  }
}
"""

# auth session + shared ids + page + count + owners + members + subjects + topics + progress
# + bookmarks + notes: one statement each, whatever the page size.
EXPECTED_STATEMENTS = 11


@pytest.fixture
def normal_executor(app: Starlette) -> Iterator[None]:
    """These tests pin the normal executor's loaders; the fast path (which answers a learned
    dashboard query in fewer statements) is pinned in tests/test_fast_path.py."""
    app.state.fast_path.serving = False
    try:
        yield
    finally:
        app.state.fast_path.serving = True


@pytest.mark.usefixtures("normal_executor")
@pytest.mark.parametrize("courses", [1, 100])
async def test_dashboard_statement_count_is_constant(
    client: httpx.AsyncClient, courses: int
) -> None:
    user = await sign_up(client)
    first_topic = None
    for index in range(courses):
        tree = await make_course(user.id, title=f"Course {index}", subjects=3, topics=2)
        first_topic = first_topic or tree.topic_ids[0]
    assert first_topic is not None
    await TopicProgress.create(user_id=user.id, topic_id=first_topic, completed=True, score=90)
    await Bookmark.create(user_id=user.id, topic_id=first_topic)
    await Note.create(user_id=user.id, topic_id=first_topic, body="remember this")

    with count_statements() as statements:
        body = await gql(client, DASHBOARD, {"first": courses}, token=user.token)

    assert "errors" not in body, body
    page = body["data"]["courses"]
    assert page["totalCount"] == courses
    assert len(page["edges"]) == courses
    assert all(len(edge["node"]["subjects"]) == 3 for edge in page["edges"])
    assert (
        sum(len(s["topics"]) for e in page["edges"] for s in e["node"]["subjects"]) == 6 * courses
    )
    topics = [t for e in page["edges"] for s in e["node"]["subjects"] for t in s["topics"]]
    marked = next(t for t in topics if t["id"] == str(first_topic))
    assert marked["progress"] == {"completed": True, "score": 90}
    assert marked["bookmarked"] is True
    assert marked["notes"] == [{"body": "remember this"}]
    assert len(statements) == EXPECTED_STATEMENTS, "\n".join(statements)


@pytest.mark.usefixtures("normal_executor")
async def test_total_count_costs_nothing_when_not_asked(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    await make_course(user.id)
    with count_statements() as statements:
        body = await gql(client, "{ courses { edges { node { id } } } }", token=user.token)
    assert len(body["data"]["courses"]["edges"]) == 1
    assert len(statements) == 3  # auth session + shared ids + page
