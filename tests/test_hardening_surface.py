"""Attack surface and operations: CSRF prevention, GET rules, introspection and GraphiQL by
setting, CORS, WebSocket origins, access logs without secrets, /metrics, compression, health."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import brotli
import httpx
import pytest
import zstandard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from app import _middleware, create_app
from schema import build_schema
from settings import Environment, Settings
from tests.support import sign_up
from web.compression import CompressionMiddleware, choose_encoding

ME = "query Me { me { id } }"


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_simple_posts_need_a_preflight_header(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    body = json.dumps({"query": ME}).encode()
    headers = {"content-type": content_type} if content_type else {}
    refused = await client.post("/graphql", content=body, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"]["code"] == "CSRF_PREVENTED"
    # With a header that forces a preflight the request reaches GraphQL (which then says what
    # it thinks of the content type); application/json always passes.
    allowed = await client.post(
        "/graphql", content=body, headers={**headers, "apollo-require-preflight": "true"}
    )
    assert allowed.status_code != 400 or "CSRF" not in allowed.text
    assert (await client.post("/graphql", json={"query": ME})).json() == {"data": {"me": None}}


async def test_get_queries_need_a_preflight_header_and_mutations_never_run(
    client: httpx.AsyncClient,
) -> None:
    refused = await client.get("/graphql", params={"query": ME})
    assert refused.status_code == 400
    ok = await client.get(
        "/graphql", params={"query": ME}, headers={"x-requested-with": "XMLHttpRequest"}
    )
    assert ok.json() == {"data": {"me": None}}
    mutation = await client.get(
        "/graphql",
        params={"query": "mutation { logOut { __typename } }"},
        headers={"apollo-require-preflight": "1"},
    )
    assert mutation.status_code in (400, 405)
    assert "mutation" in mutation.text.lower() and "data" not in mutation.text


async def test_introspection_and_graphiql_follow_the_setting(settings: Settings) -> None:
    introspect = "{ __schema { queryType { name } } }"
    on = await build_schema(settings).execute(introspect)
    assert on.errors is None
    production = settings.model_copy(update={"graphql_introspection": False})
    off = await build_schema(production).execute(introspect)
    assert off.errors and "introspection" in off.errors[0].message.lower()
    prod = Settings(
        COURSEGEN_ENV=Environment.PRODUCTION, SECRET_KEY="x" * 40, DATABASE_URL="sqlite://:memory:"
    )
    assert not prod.introspection_enabled and not prod.ide_enabled
    no_suggestions = await build_schema(prod).execute("{ mee { id } }")
    assert no_suggestions.errors and "Did you mean" not in no_suggestions.errors[0].message


async def test_graphiql_is_served_in_development_only(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    page = await client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    off = create_app(settings.model_copy(update={"graphql_ide": False}))
    assert _graphql_view(off).graphql_ide is None
    assert _graphql_view(create_app(settings)).graphql_ide == "graphiql"


def _graphql_view(app: Starlette) -> Any:
    route = next(
        r
        for r in app.routes
        if getattr(r, "path", "") == "/graphql" and type(r).__name__ == "WebSocketRoute"
    )
    return route.endpoint  # type: ignore[attr-defined]


async def test_cors_by_setting() -> None:
    settings = Settings(
        COURSEGEN_ENV=Environment.TEST, cors_allowed_origins=["https://app.example"]
    )

    async def hello(_: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    app = Starlette(
        routes=[Route("/x", hello, methods=["GET", "POST"])], middleware=_middleware(settings)
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        preflight = {"access-control-request-method": "POST"}
        good = await http.options("/x", headers={"origin": "https://app.example", **preflight})
        assert good.headers["access-control-allow-origin"] == "https://app.example"
        bad = await http.options("/x", headers={"origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in bad.headers


def test_websocket_origins_come_from_the_setting() -> None:
    settings = Settings(
        COURSEGEN_ENV=Environment.TEST, websocket_allowed_origins=["https://app.example"]
    )
    assert set(_graphql_view(create_app(settings)).allowed_origins) == {"https://app.example"}
    # Strawberry refuses cross-origin handshakes from any other origin (403 before accept).
    assert (
        set(_graphql_view(create_app(Settings(COURSEGEN_ENV=Environment.TEST))).allowed_origins)
        == set()
    )


async def test_access_log_has_the_operation_and_user_and_no_secrets(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    user = await sign_up(client)
    caplog.set_level(logging.INFO, logger="coursegen.access")
    query = """mutation LogIn($input: LogInInput!) { logIn(input: $input) {
        ... on AuthSuccess { accessToken refreshToken } } }"""
    variables = {"input": {"email": user.email, "password": user.password}}
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    tokens = response.json()["data"]["logIn"]
    await client.post(
        "/graphql", json={"query": ME}, headers={"authorization": f"Bearer {user.token}"}
    )
    lines = [r for r in caplog.records if r.name == "coursegen.access"][-2:]
    login, me = (vars(r) for r in lines)
    assert login["operation"] == "LogIn" and login["operation_type"] == "mutation"
    assert login["status"] == 200 and login["outcome"] == "ok" and login["duration_ms"] >= 0
    assert me["operation"] == "Me" and me["user_id"] == str(user.id)
    text = caplog.text + "".join(json.dumps(vars(r), default=str) for r in lines)
    for secret in (user.password, user.token, tokens["accessToken"], tokens["refreshToken"]):
        assert secret not in text


async def test_metrics_endpoint(client: httpx.AsyncClient) -> None:
    await client.post("/graphql", json={"query": ME})
    await client.post("/graphql", json={"query": "{ nope }"})
    text = (await client.get("/metrics")).text
    assert (
        'coursegen_graphql_operation_seconds_count{operation="Me",outcome="ok",type="query"}'
        in text
    )
    assert 'coursegen_graphql_errors_total{code="GRAPHQL_VALIDATION_FAILED"}' in text
    assert "coursegen_http_request_seconds_bucket" in text
    assert "coursegen_job_queue_depth" in text


async def test_health_ready_checks_database_migrations_and_redis(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    body = (await client.get("/health/ready")).json()
    assert body["checks"]["database"] == "ok" and body["checks"]["migrations"] == "ok"
    assert body["status"] == "ready"
    if settings.redis_url:
        assert body["checks"]["redis"] == "ok"


def test_accept_encoding_preference() -> None:
    assert choose_encoding("gzip, br, zstd") == "zstd"
    assert choose_encoding("gzip, br;q=0.5") == "br"
    assert choose_encoding("gzip") == "gzip"
    assert choose_encoding("zstd;q=0, identity") is None
    assert choose_encoding("") is None


async def test_large_responses_are_compressed_and_event_streams_are_not() -> None:
    settings = Settings(COURSEGEN_ENV=Environment.TEST, csrf_prevention=False)
    big = "x" * 5000

    async def large(_: Request) -> PlainTextResponse:
        return PlainTextResponse(big)

    async def small(_: Request) -> PlainTextResponse:
        return PlainTextResponse("tiny")

    async def events(_: Request) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"data: {i}\n\n".encode() + b" " * 2000

        return StreamingResponse(gen(), media_type="text/event-stream")

    app = Starlette(
        routes=[Route("/large", large), Route("/small", small), Route("/events", events)],
        middleware=_middleware(settings),
    )
    decoders = {
        "zstd": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
        "br": brotli.decompress,
        "gzip": gzip.decompress,
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        for encoding, decode in decoders.items():
            async with http.stream("GET", "/large", headers={"accept-encoding": encoding}) as r:
                raw = b"".join([chunk async for chunk in r.aiter_raw()])
            assert r.headers["content-encoding"] == encoding
            assert len(raw) < 200 and decode(raw).decode() == big
        small_response = await http.get("/small", headers={"accept-encoding": "gzip"})
        assert "content-encoding" not in small_response.headers
        streamed = await http.get("/events", headers={"accept-encoding": "gzip"})
        assert "content-encoding" not in streamed.headers
        assert streamed.text.startswith("data: 0")
    # At the ASGI level: each event is passed on as it is sent, none held back.
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/events",
        "headers": [(b"accept-encoding", b"gzip")],
        "query_string": b"",
        "root_path": "",
    }
    await CompressionMiddleware(events_app, minimum_size=10)(scope, receive, send)
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert bodies[:3] == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]


async def events_app(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    for i in range(3):
        await send(
            {"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True}
        )
    await send({"type": "http.response.body", "body": b"", "more_body": False})
