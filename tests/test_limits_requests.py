"""Limits on what a request may ask: depth, aliases, tokens, cost (refused before any resolver
runs), cost budgets per user and per IP, log-in and sign-up limits, body size, timeouts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tortoise import connections
from tortoise.transactions import in_transaction

from app import _middleware
from schema.cost import CostCalculator
from settings import Environment, Settings
from tests.support import count_statements, make_course, sign_up

LOG_IN_FIELDS = """
  __typename
  ... on AuthSuccess { accessToken }
  ... on UserError { code message }
  ... on RateLimitedError { retryAfter }
"""


@pytest.fixture
async def from_ip(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client with an IP of its own, so per-IP budgets start empty."""
    ip = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    transport = httpx.ASGITransport(app=app, client=(ip, 4321))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def post(
    client: httpx.AsyncClient, query: str, token: str | None = None, **variables: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )


def only_code(body: dict[str, Any]) -> str:
    assert body.get("data") is None, body
    [error] = body["errors"]
    return str(error["extensions"]["code"]) if "extensions" in error else error["message"]


async def test_too_deep_too_many_aliases_and_tokens_are_refused_before_any_sql(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Our schema has no cycles deeper than 7 levels; the limit is lowered to show it working.
    monkeypatch.setattr(settings, "max_query_depth", 4)
    deep = "query { courses { edges { node { subjects { topics { notes { id } } } } } } }"
    aliases = "query {" + " ".join(f"a{i}: me {{ id }}" for i in range(31)) + "}"
    tokens = "query { me { " + " ".join(["id"] * 3001) + " } }"
    for query, expected in ((deep, "exceeds maximum operation depth"), (aliases, "aliases")):
        with count_statements() as statements:
            body = (await post(client, query)).json()
        assert expected in body["errors"][0]["message"], body
        assert body.get("data") is None
        assert statements == []
    with count_statements() as statements:
        body = (await post(client, tokens)).json()
    assert "token" in body["errors"][0]["message"].lower(), body
    assert statements == []


async def test_a_costly_query_is_refused_in_validation_without_running_sql(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await sign_up(client)
    monkeypatch.setattr(settings, "max_query_cost", 1000)
    query = "query($n: Int!) { courses(first: $n) { nodes { id subjects { id topics { id } } } } }"
    # Anonymous: not a single statement for the whole request.
    with count_statements() as statements:
        body = (await post(client, query, n=100)).json()
    assert only_code(body) == "QUERY_TOO_COSTLY"
    assert body["errors"][0]["extensions"]["cost"] == 1 + 100 * (1 + 12 * (1 + 12))
    assert statements == []
    # With a token: exactly one, the viewer lookup of the request context, which runs before
    # the operation; the operation itself runs none.
    with count_statements() as statements:
        body = (await post(client, query, token=user.token, n=100)).json()
    assert only_code(body) == "QUERY_TOO_COSTLY"
    assert len(statements) == 1 and "auth_sessions" in statements[0]
    # A smaller page of the same shape is served.
    body = (await post(client, query, token=user.token, n=5)).json()
    assert body["data"] == {"courses": {"nodes": []}}


async def test_every_response_reports_its_cost(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "report_query_cost", True)
    user = await sign_up(client)
    await make_course(user.id, subjects=2, topics=3)
    query = "{ courses(first: 10) { totalCount nodes { id subjects { id topics { id } } } } }"
    body = (await post(client, query, token=user.token)).json()
    cost = body["extensions"]["cost"]
    assert cost["requested"] == 2 + 1 + 10 * (1 + 12 * (1 + 12))
    # connection 1 + totalCount 2 + 1 course + 2 subjects + 6 topics
    assert cost["actual"] == 1 + 2 + 1 + 2 + 6
    assert 0 < cost["remaining"] <= 1_000_000 - cost["requested"]
    assert cost["limit"] == settings.max_query_cost


async def test_skipped_fields_are_neither_priced_nor_counted(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "report_query_cost", True)
    user = await sign_up(client)
    await make_course(user.id, subjects=2, topics=3)
    query = (
        "query($deep: Boolean!, $count: Boolean = false) { courses(first: 10) { "
        "totalCount @include(if: $count) nodes { id subjects { id topics @include(if: $deep) "
        "{ id } } } nodes @skip(if: true) { title } } }"
    )
    shallow = (await post(client, query, token=user.token, deep=False)).json()
    deep = (await post(client, query, token=user.token, deep=True, count=True)).json()
    # connection 1 + 10 courses x (1 + 12 subjects); the skipped `nodes` and, by the
    # variable's default, `totalCount` cost nothing
    assert shallow["extensions"]["cost"]["requested"] == 1 + 10 * (1 + 12)
    assert shallow["extensions"]["cost"]["actual"] == 1 + 1 + 2
    assert deep["extensions"]["cost"]["requested"] == 1 + 2 + 10 * (1 + 12 * (1 + 12))
    assert deep["extensions"]["cost"]["actual"] == 1 + 2 + 1 + 2 + 6


async def test_cost_budget_per_user_answers_429_with_retry_after(
    from_ip: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "report_query_cost", True)
    first, second = await sign_up(from_ip), await sign_up(from_ip)
    monkeypatch.setattr(settings, "cost_rate_user", "500/minute")
    query = "{ courses(first: 10) { nodes { id subjects { id } } } }"  # 1 + 10 * 13 = 131
    remaining = []
    for _ in range(3):
        response = await post(from_ip, query, token=first.token)
        assert response.status_code == 200, response.text
        remaining.append(response.json()["extensions"]["cost"]["remaining"])
    assert remaining == [369, 238, 107]
    with count_statements() as statements:
        refused = await post(from_ip, query, token=first.token)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert only_code(refused.json()) == "RATE_LIMITED"
    assert len(statements) == 1  # the viewer lookup only
    # Another user's budget is their own.
    assert (await post(from_ip, query, token=second.token)).status_code == 200


async def test_cost_budget_per_ip(
    from_ip: httpx.AsyncClient,
    client: httpx.AsyncClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "cost_rate_ip", "5/minute")
    for _ in range(5):
        assert (await post(from_ip, "{ me { id } }")).status_code == 200
    refused = await post(from_ip, "{ me { id } }")
    assert refused.status_code == 429 and only_code(refused.json()) == "RATE_LIMITED"
    # Other addresses are not affected... except for the budget shared with this test's
    # default client, which is not this IP.
    monkeypatch.setattr(settings, "cost_rate_ip", "1000000/minute")
    assert (await post(client, "{ me { id } }")).status_code == 200


async def test_aliased_log_ins_do_not_get_a_try_each(
    from_ip: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim, other = await sign_up(from_ip), await sign_up(from_ip)
    monkeypatch.setattr(settings, "login_rate_account", "3/15 minutes")
    attempts = " ".join(
        f'a{i}: logIn(input: {{email: "{victim.email}", password: "guess-{i}-guess"}})'
        f" {{ {LOG_IN_FIELDS} }}"
        for i in range(20)
    )
    body = (await post(from_ip, f"mutation {{ {attempts} }}")).json()
    outcomes = [body["data"][f"a{i}"]["__typename"] for i in range(20)]
    assert outcomes.count("InvalidCredentialsError") == 3
    assert outcomes.count("RateLimitedError") == 17
    assert body["data"]["a19"]["retryAfter"] >= 1
    # Even the right password is refused now, for this account only.
    right = f'logIn(input: {{email: "{victim.email}", password: "{victim.password}"}})'
    body = (await post(from_ip, f"mutation {{ {right} {{ {LOG_IN_FIELDS} }} }}")).json()
    assert body["data"]["logIn"]["__typename"] == "RateLimitedError"
    good = f'logIn(input: {{email: "{other.email}", password: "{other.password}"}})'
    body = (await post(from_ip, f"mutation {{ {good} {{ {LOG_IN_FIELDS} }} }}")).json()
    assert body["data"]["logIn"]["__typename"] == "AuthSuccess"
    # A hundred aliases are refused whole, before any password is hashed.
    hundred = " ".join(
        f'a{i}: logIn(input: {{email: "{other.email}", password: "x"}}) {{ __typename }}'
        for i in range(100)
    )
    with count_statements() as statements:
        body = (await post(from_ip, f"mutation {{ {hundred} }}")).json()
    assert "aliases" in body["errors"][0]["message"] and statements == []


async def test_log_ins_and_sign_ups_per_ip(
    from_ip: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await sign_up(from_ip)
    monkeypatch.setattr(settings, "login_rate_ip", "2/15 minutes")
    monkeypatch.setattr(settings, "signup_rate_ip", "1/hour")
    kinds = []
    for _ in range(3):
        query = (
            f'mutation {{ logIn(input: {{email: "{user.email}", password: "{user.password}"}}) '
            f"{{ {LOG_IN_FIELDS} }} }}"
        )
        kinds.append((await post(from_ip, query)).json()["data"]["logIn"]["__typename"])
    assert kinds == ["AuthSuccess", "AuthSuccess", "RateLimitedError"]
    sign_up_query = """mutation($input: SignUpInput!) { signUp(input: $input) {
        __typename ... on UserError { code } } }"""
    results = []
    for _ in range(2):
        email = f"ip-{uuid.uuid4().hex[:8]}@example.com"
        variables = {"email": email, "password": "long enough pass", "displayName": "X"}
        body = (await post(from_ip, sign_up_query, input=variables)).json()
        results.append(body["data"]["signUp"]["__typename"])
    assert results == ["AuthSuccess", "RateLimitedError"]


async def test_oversized_bodies_are_refused_with_413(client: httpx.AsyncClient) -> None:
    big = "{ me { id } }" + " " * 300_000
    response = await client.post("/graphql", json={"query": big})
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(40):
            yield b" " * 10_000

    response = await client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_slow_requests_get_504_and_streams_are_exempt() -> None:
    settings = Settings(
        COURSEGEN_ENV=Environment.TEST, request_timeout_seconds=0.2, csrf_prevention=False
    )

    async def slow(_: Request) -> JSONResponse:
        await asyncio.sleep(5)
        return JSONResponse({})

    async def fast(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/slow", slow), Route("/fast", fast)], middleware=_middleware(settings)
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        started = asyncio.get_running_loop().time()
        response = await http.get("/slow")
        assert response.status_code == 504
        assert response.json()["errors"][0]["extensions"]["code"] == "REQUEST_TIMEOUT"
        assert asyncio.get_running_loop().time() - started < 2
        assert (await http.get("/fast")).json() == {"ok": True}


async def test_postgres_connections_carry_a_statement_timeout(settings: Settings) -> None:
    if settings.uses_sqlite:
        pytest.skip("statement_timeout is a PostgreSQL setting")
    _, rows = await connections.get("default").execute_query("SHOW statement_timeout")
    assert rows[0]["statement_timeout"] == "5s"
    with pytest.raises(Exception, match="statement timeout"):
        async with in_transaction() as connection:
            await connection.execute_query("SET LOCAL statement_timeout = 100")
            await connection.execute_query("SELECT pg_sleep(2)")


def test_cost_of_fragments_and_defaults(settings: Settings) -> None:
    from graphql import parse

    from schema import build_schema

    schema = build_schema(settings)._schema
    query = """
    query { courses { ...Page } mine: courses(first: 3) { nodes { id } } }
    fragment Page on CourseConnection { nodes { id owner { id } } pageInfo { hasNextPage } }
    """
    # default first 20: 1 + 20 * 2 + pageInfo 1; aliased first 3: 1 + 3
    assert CostCalculator(schema, parse(query), {}, None).requested() == 42 + 4


def _log_in_query(email: str, password: str, device: str | None = None) -> str:
    extra = f', deviceToken: "{device}"' if device else ""
    return (
        f'mutation {{ logIn(input: {{email: "{email}", password: "{password}"{extra}}}) '
        "{ __typename ... on AuthSuccess { deviceToken } ... on UserError { code } "
        "... on RateLimitedError { retryAfter } } }"
    )


@pytest.fixture
async def owner_ip(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(f"10.250.{uuid.uuid4().int % 250}.7", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_an_attacker_cannot_lock_the_owner_out(
    app: Starlette,
    from_ip: httpx.AsyncClient,
    owner_ip: httpx.AsyncClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OWASP: limit per account and IP, and let a correct password from a known client
    through, so guessing is slowed without handing the attacker a lock-out."""
    victim = await sign_up(owner_ip)
    known = (await post(owner_ip, _log_in_query(victim.email, victim.password))).json()
    device = known["data"]["logIn"]["deviceToken"]
    assert device and device.startswith("d1.")
    monkeypatch.setattr(settings, "login_rate_account_ip", "3/15 minutes")
    monkeypatch.setattr(settings, "login_rate_account", "6/15 minutes")

    outcomes = []
    for i in range(5):  # the attacker, from one address
        body = (await post(from_ip, _log_in_query(victim.email, f"guess-{i}-guess"))).json()
        outcomes.append(body["data"]["logIn"]["__typename"])
    assert outcomes == ["InvalidCredentialsError"] * 3 + ["RateLimitedError"] * 2
    # The attacker is slowed, told when to come back; the owner's address is not affected.
    right = (await post(from_ip, _log_in_query(victim.email, victim.password))).json()
    assert right["data"]["logIn"]["__typename"] == "RateLimitedError"
    assert right["data"]["logIn"]["retryAfter"] >= 1
    owner = (await post(owner_ip, _log_in_query(victim.email, victim.password))).json()
    assert owner["data"]["logIn"]["__typename"] == "AuthSuccess"

    # Guessing from many addresses spends the account-wide budget: unknown clients are refused
    # then, but the owner's known device still gets in with the right password.
    for i in range(3):
        transport = httpx.ASGITransport(app=app, client=(f"10.251.{i}.9", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as other:
            await post(other, _log_in_query(victim.email, "distributed-guess"))
    fresh = (await post(owner_ip, _log_in_query(victim.email, victim.password))).json()
    assert fresh["data"]["logIn"]["__typename"] == "RateLimitedError"
    trusted = (await post(owner_ip, _log_in_query(victim.email, victim.password, device))).json()
    assert trusted["data"]["logIn"]["__typename"] == "AuthSuccess"
    # A device token is bound to its account: it opens no other account's limits.
    other_user = await sign_up(owner_ip)
    forged = (await post(from_ip, _log_in_query(other_user.email, "guess-x-guess", device))).json()
    assert forged["data"]["logIn"]["__typename"] in {"InvalidCredentialsError", "RateLimitedError"}
