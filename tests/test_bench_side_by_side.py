"""The side-by-side benchmark's own guards (bench/side_by_side.py, bench/floor_app.py): the data
check must see a difference wherever one matters and none where only the form differs, and
the floor must accept exactly the tokens coursegen accepts. No server, no timing."""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

import jwt
import pytest

from bench import floor_app
from bench.side_by_side import AUDIENCE, ISSUER, BenchError, first_difference, normalized
from services.tokens import issue_access_token

SECRET = "side-by-side-test-secret-0123456789abcdef"
USER = uuid.uuid4()


def _coursegen_page() -> dict[str, Any]:
    """Two courses, two subjects each, two topics each, in coursegen's response shape."""
    edges = []
    for c in range(2):
        subjects = [
            {
                "id": f"s{c}{s}",
                "title": f"Subject {c}.{s}",
                "position": s,
                "topics": [
                    {
                        "id": f"t{c}{s}{t}",
                        "title": f"Topic {c}.{s}.{t}",
                        "position": t,
                        "estimatedMinutes": 10,
                        "progress": {"completed": True} if t == 0 else None,
                    }
                    for t in range(2)
                ],
            }
            for s in range(2)
        ]
        edges.append(
            {
                "cursor": f"cursor-{c}",
                "node": {
                    "id": f"c{c}",
                    "title": f"Course {c}",
                    "level": "BEGINNER",
                    "subjects": subjects,
                },
            }
        )
    return {
        "data": {
            "courses": {
                "totalCount": 51,
                "pageInfo": {"hasNextPage": True, "endCursor": "cursor-1"},
                "edges": edges,
            }
        },
        "extensions": {"cost": {"requested": 6043}},
    }


def _as_postgraphile(page: dict[str, Any]) -> dict[str, Any]:
    """The same data in PostGraphile's form: its cursors, lower-case enums, rank strings, and
    progress as the (RLS-narrowed) list of the topic's progress rows."""
    result = copy.deepcopy(page)
    result.pop("extensions")
    for edge in result["data"]["courses"]["edges"]:
        edge["cursor"] = "WyJuYXR1cmFsIl0="
        edge["node"]["level"] = "beginner"
        for subject in edge["node"]["subjects"]:
            subject["position"] = f"a{subject['position']}"
            for topic in subject["topics"]:
                topic["position"] = f"a{topic['position']}"
                topic["progress"] = [topic["progress"]] if topic["progress"] else []
    return result


def _tree(page: dict[str, Any]) -> dict[str, Any]:
    return normalized(json.dumps(page).encode())


def test_the_same_data_in_another_form_is_equal() -> None:
    page = _coursegen_page()
    assert first_difference(_tree(page), _tree(_as_postgraphile(page))) is None


@pytest.mark.parametrize(
    ("change", "path"),
    [
        # topics in another order (e.g. ranks sorted by a collation instead of bytes)
        (
            lambda p: p["data"]["courses"]["edges"][0]["node"]["subjects"][1]["topics"].reverse(),
            "$.courses[0].subjects[1].topics[0].id",
        ),
        # another count (e.g. a deleted or someone else's course counted)
        (lambda p: p["data"]["courses"].update(totalCount=500), "$.totalCount"),
        # a course missing from the page
        (lambda p: p["data"]["courses"]["edges"].pop(), "$.courses"),
        # the viewer's progress lost
        (
            lambda p: p["data"]["courses"]["edges"][1]["node"]["subjects"][0]["topics"][0].update(
                progress=None
            ),
            "$.courses[1].subjects[0].topics[0].completed",
        ),
    ],
)
def test_a_difference_that_matters_is_found(change: Any, path: str) -> None:
    page = _coursegen_page()
    other = _as_postgraphile(page)
    change(other)
    difference = first_difference(_tree(page), _tree(other))
    assert difference is not None and difference.startswith(path), difference


def test_another_users_progress_row_fails_the_check() -> None:
    page = _as_postgraphile(_coursegen_page())
    topic = page["data"]["courses"]["edges"][0]["node"]["subjects"][0]["topics"][0]
    topic["progress"] = [{"completed": True}, {"completed": False}]
    with pytest.raises(BenchError, match="2 progress rows"):
        _tree(page)


def test_an_error_response_fails_the_check() -> None:
    page = _coursegen_page()
    page["errors"] = [{"message": "permission denied for table courses"}]
    with pytest.raises(BenchError, match="permission denied"):
        _tree(page)


def _token(**overrides: Any) -> str:
    claims = jwt.decode(
        issue_access_token(
            key=SECRET,
            issuer=ISSUER,
            audience=AUDIENCE,
            user_id=USER,
            session_id=uuid.uuid4(),
            ttl_seconds=60,
        ),
        options={"verify_signature": False},
    )
    claims.update(overrides)
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _headers(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"authorization", value.encode())]


def test_the_floor_accepts_coursegens_access_token() -> None:
    assert floor_app.viewer_id(_headers(f"Bearer {_token()}"), SECRET) == USER


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {_token(aud='another-api')}",
        f"Bearer {_token(iss='someone-else')}",
        f"Bearer {_token(exp=int(time.time()) - 120)}",
        f"Bearer {_token(typ='refresh')}",
        f"Basic {_token()}",
        "Bearer ",
    ],
    ids=["audience", "issuer", "expired", "not-access", "scheme", "empty"],
)
def test_the_floor_refuses_what_coursegen_refuses(authorization: str) -> None:
    assert floor_app.viewer_id(_headers(authorization), SECRET) is None


def test_the_floor_refuses_another_key() -> None:
    assert floor_app.viewer_id(_headers(f"Bearer {_token()}"), SECRET[::-1]) is None
