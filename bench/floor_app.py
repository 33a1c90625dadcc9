"""The floor of the side-by-side benchmark: the dashboard page with no framework at all.

    DATABASE_URL=postgres://... SECRET_KEY=... uvicorn bench.floor_app:app --port 8042

A bare ASGI callable under uvicorn: it verifies coursegen's access token (HS256, the same
claims coursegen checks, without coursegen's session lookup), runs three keyed statements on
one pooled asyncpg connection (the page of courses with its count, the subjects of those
courses, their topics with the viewer's progress) and answers with orjson, in the JSON shape
coursegen gives `bench.dashboard_load.DASHBOARD` (cursors included, `extensions` excepted).

It answers only that query: any POST to /graphql gets the dashboard (the body must be a JSON
object with a `query`, which is not otherwise read). GET /health is 200 once the pool is up.
What it does not do (parse, validate, plan, authorize through the app's rules, limit costs) is
exactly what it measures: the time no GraphQL server can avoid on this machine.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import asyncpg
import jwt
import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PAGE = 20
ORDER = "created_at_desc"  # coursegen's default order, in its cursors
ISSUER = "coursegen"
AUDIENCE = "coursegen-api"

# Owner or member, not deleted; the UNION form lets PostgreSQL use the owner index
# (bench/README.md: an OR with a subquery scans every course). count(*) OVER () is taken
# before LIMIT: the page and its totalCount in one statement.
PAGE_SQL = """
SELECT id, title, description, level, status, version, created_at, updated_at,
       count(*) OVER () AS total
FROM courses
WHERE deleted_at IS NULL
  AND id IN (SELECT id FROM courses WHERE owner_id = $1
             UNION ALL SELECT course_id FROM course_members WHERE user_id = $1)
ORDER BY created_at DESC, id DESC
LIMIT $2
"""
# Ranks compare as bytes (services.ranks.sort_key): COLLATE "C" whatever the database's.
SUBJECTS_SQL = """
SELECT id, course_id, title FROM subjects
WHERE course_id = ANY($1::uuid[])
ORDER BY course_id, rank COLLATE "C"
"""
TOPICS_SQL = """
SELECT t.id, t.subject_id, t.title, t.estimated_minutes, p.completed
FROM topics t
LEFT JOIN topic_progress p ON p.topic_id = t.id AND p.user_id = $2
WHERE t.subject_id = ANY($1::uuid[])
ORDER BY t.subject_id, t.rank COLLATE "C"
"""

_JSON_HEADERS = [(b"content-type", b"application/json")]


def _error(message: str, code: str) -> bytes:
    return orjson.dumps(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    )


def _cursor(created_at: Any, course_id: uuid.UUID) -> str:
    raw = orjson.dumps([ORDER, created_at.isoformat(), str(course_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def viewer_id(headers: list[tuple[bytes, bytes]], secret: str) -> uuid.UUID | None:
    """The user id of a valid access token in the Authorization header, else None."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token:
                return None
            try:
                claims = jwt.decode(
                    token,
                    secret,
                    algorithms=["HS256"],
                    audience=AUDIENCE,
                    issuer=ISSUER,
                    options={"require": ["exp", "iat", "sub", "sid", "iss", "aud"]},
                )
                if claims.get("typ") != "access":
                    return None
                return uuid.UUID(claims["sub"])
            except (jwt.InvalidTokenError, ValueError, TypeError):
                return None
    return None


async def dashboard(pool: asyncpg.Pool, user_id: uuid.UUID) -> bytes:
    async with pool.acquire() as connection:
        rows = await connection.fetch(PAGE_SQL, user_id, PAGE + 1)
        page = rows[:PAGE]
        course_ids = [row["id"] for row in page]
        subjects = await connection.fetch(SUBJECTS_SQL, course_ids)
        topics = await connection.fetch(TOPICS_SQL, [row["id"] for row in subjects], user_id)

    topics_of: defaultdict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for row in topics:
        siblings = topics_of[row["subject_id"]]
        completed = row["completed"]
        siblings.append(
            {
                "id": str(row["id"]),
                "title": row["title"],
                "position": len(siblings),
                "estimatedMinutes": row["estimated_minutes"],
                "progress": None if completed is None else {"completed": completed},
            }
        )
    subjects_of: defaultdict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for row in subjects:
        siblings = subjects_of[row["course_id"]]
        siblings.append(
            {
                "id": str(row["id"]),
                "title": row["title"],
                "position": len(siblings),
                "topics": topics_of.get(row["id"], []),
            }
        )
    edges = [
        {
            "cursor": _cursor(row["created_at"], row["id"]),
            "node": {
                "id": str(row["id"]),
                "title": row["title"],
                "description": row["description"],
                "level": row["level"].upper(),
                "status": row["status"].upper(),
                "version": row["version"],
                "updatedAt": row["updated_at"],
                "subjects": subjects_of.get(row["id"], []),
            },
        }
        for row in page
    ]
    connection_page = {
        "totalCount": rows[0]["total"] if rows else 0,
        "pageInfo": {
            "hasNextPage": len(rows) > PAGE,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
        "edges": edges,
    }
    return orjson.dumps({"data": {"courses": connection_page}})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, headers: list[Any] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


class FloorApp:
    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None
        self.secret = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/health" and method == "GET":
            await _respond(send, 200 if self.pool else 503, b"ok")
            return
        if path != "/graphql" or method != "POST":
            await _respond(send, 404, b"")
            return
        body = await _read_body(receive)
        try:
            request = orjson.loads(body)
            if not isinstance(request, dict) or not isinstance(request.get("query"), str):
                raise ValueError("no query")
        except (orjson.JSONDecodeError, ValueError):
            await _respond(send, 400, _error("Send a JSON object with a query.", "BAD_REQUEST"))
            return
        user_id = viewer_id(scope["headers"], self.secret)
        if user_id is None:
            await _respond(send, 200, _error("Log in first.", "UNAUTHENTICATED"), _JSON_HEADERS)
            return
        assert self.pool is not None
        await _respond(send, 200, await dashboard(self.pool, user_id), _JSON_HEADERS)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.secret = os.environ["SECRET_KEY"]
                    url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
                    size = int(os.environ.get("FLOOR_POOL_SIZE", "10"))
                    self.pool = await asyncpg.create_pool(url, min_size=size, max_size=size)
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": repr(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


app = FloorApp()
