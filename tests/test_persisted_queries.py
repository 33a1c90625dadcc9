"""Automatic persisted queries (Apollo's APQ protocol) over POST and GET, and the
trusted-documents mode, on every transport."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from app import create_app
from schema import build_schema
from settings import Settings
from tests.support import sign_up
from web import persisted_queries
from web.persisted_queries import MemoryDocumentStore, TrustedDocuments

PREFLIGHT = {"apollo-require-preflight": "true"}


def sha(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def apq(document: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(document)}}


def _unique(name: str) -> str:
    """A document no earlier test (or run, with Redis) has registered."""
    return f"query {name}{uuid.uuid4().hex[:8]} {{ me {{ id }} __typename }}"


def _view(app: Starlette) -> Any:
    return next(r.endpoint for r in app.routes if isinstance(r, WebSocketRoute))


async def test_apq_over_post_not_found_then_registered_then_by_hash(
    client: httpx.AsyncClient,
) -> None:
    document = _unique("Apq")
    unknown = await client.post("/graphql", json={"extensions": apq(document)})
    assert unknown.status_code == 200
    assert unknown.json()["errors"][0] == {
        "message": "PersistedQueryNotFound",
        "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
    }
    assert "no-cache" in unknown.headers["cache-control"]
    registered = await client.post(
        "/graphql", json={"query": document, "extensions": apq(document)}
    )
    assert registered.json() == {"data": {"me": None, "__typename": "Query"}}
    by_hash = await client.post("/graphql", json={"extensions": apq(document)})
    assert by_hash.json() == {"data": {"me": None, "__typename": "Query"}}


async def test_apq_over_get_with_variables(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    document = f"query Who{uuid.uuid4().hex[:8]}($n: Int!) {{ me {{ email }} courses(first: $n) {{ totalCount }} }}"
    headers = {**PREFLIGHT, "authorization": f"Bearer {user.token}"}
    params = {"extensions": json.dumps(apq(document)), "variables": json.dumps({"n": 2})}
    missing = await client.get("/graphql", params=params, headers=headers)
    assert missing.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    registered = await client.get("/graphql", params={**params, "query": document}, headers=headers)
    expected = {"data": {"me": {"email": user.email}, "courses": {"totalCount": 0}}}
    assert registered.json() == expected
    assert (await client.get("/graphql", params=params, headers=headers)).json() == expected


async def test_a_hash_that_is_not_the_documents_is_refused_and_not_stored(
    client: httpx.AsyncClient,
) -> None:
    document, other = _unique("Real"), _unique("Other")
    lying = await client.post("/graphql", json={"query": other, "extensions": apq(document)})
    assert lying.status_code == 400
    assert lying.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_HASH_MISMATCH"
    after = await client.post("/graphql", json={"extensions": apq(document)})
    assert after.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    "persisted",
    [
        {"version": 2, "sha256Hash": "0" * 64},
        {"version": 1, "sha256Hash": "not-a-hash"},
        {"version": 1},
        "v1",
    ],
)
async def test_malformed_persisted_query_extensions(
    client: httpx.AsyncClient, persisted: Any
) -> None:
    response = await client.post("/graphql", json={"extensions": {"persistedQuery": persisted}})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_INVALID"


async def test_a_persisted_mutation_is_never_run_over_get(client: httpx.AsyncClient) -> None:
    mutation = f"mutation Out{uuid.uuid4().hex[:8]} {{ logOut {{ __typename }} }}"
    await client.post("/graphql", json={"query": mutation, "extensions": apq(mutation)})
    refused = await client.get(
        "/graphql", params={"extensions": json.dumps(apq(mutation))}, headers=PREFLIGHT
    )
    assert refused.status_code in (400, 405) and "data" not in refused.text


async def test_unparsable_documents_are_not_stored(client: httpx.AsyncClient) -> None:
    junk = "query { me { id " + uuid.uuid4().hex
    answer = await client.post("/graphql", json={"query": junk, "extensions": apq(junk)})
    assert answer.json()["errors"][0]["message"].startswith("Syntax Error")
    again = await client.post("/graphql", json={"extensions": apq(junk)})
    assert again.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_documents_are_kept_in_redis_with_a_ttl(
    client: httpx.AsyncClient, app: Starlette, settings: Settings
) -> None:
    redis = app.state.runtime.redis
    if redis is None:
        pytest.skip("runs in the PostgreSQL + Redis run")
    document = _unique("Shared")
    await client.post("/graphql", json={"query": document, "extensions": apq(document)})
    key = f"coursegen:apq:{sha(document)}"
    assert (await redis.get(key)).decode() == document
    assert 0 < await redis.ttl(key) <= settings.apq_ttl_seconds


async def test_the_in_process_store_is_a_bounded_lru() -> None:
    store = MemoryDocumentStore(max_entries=2, ttl_seconds=60)
    for name in ("a", "b"):
        await store.put(name, f"query {name}")
    assert await store.get("a") == "query a"  # now the most recently used
    await store.put("c", "query c")
    assert await store.get("b") is None
    assert await store.get("a") == "query a" and await store.get("c") == "query c"
    expired = MemoryDocumentStore(max_entries=2, ttl_seconds=-1)
    await expired.put("a", "query a")
    assert await expired.get("a") is None


TRUSTED = "query Trusted { __typename }"
UNTRUSTED = "query Untrusted { __typename }"


@pytest.fixture
def trusted_mode(app: Starlette, tmp_path: Path) -> Iterator[TrustedDocuments]:
    """The running app's HTTP view in trusted-documents mode for one test."""
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({sha(TRUSTED): TRUSTED}))
    trusted = TrustedDocuments.load(path)
    view = _view(app)
    saved = view.trusted, view.persisted
    view.trusted, view.persisted = trusted, None
    try:
        yield trusted
    finally:
        view.trusted, view.persisted = saved


async def test_trusted_mode_runs_only_registered_documents(
    client: httpx.AsyncClient, trusted_mode: TrustedDocuments
) -> None:
    by_text = await client.post("/graphql", json={"query": TRUSTED})
    assert by_text.json() == {"data": {"__typename": "Query"}}
    by_hash = await client.post("/graphql", json={"extensions": apq(TRUSTED)})
    assert by_hash.json() == {"data": {"__typename": "Query"}}
    for body in (
        {"query": UNTRUSTED},
        {"extensions": apq(UNTRUSTED)},  # an unknown hash is not registered either
        {"query": UNTRUSTED, "extensions": apq(UNTRUSTED)},
        {"query": TRUSTED + " "},  # not the identical text
    ):
        refused = await client.post("/graphql", json=body)
        assert refused.status_code == 403, body
        assert refused.json()["errors"][0]["extensions"]["code"] == "OPERATION_NOT_TRUSTED"
    still_unknown = await client.post("/graphql", json={"extensions": apq(UNTRUSTED)})
    assert still_unknown.status_code == 403


async def test_trusted_mode_covers_websocket_and_sse_operations(settings: Settings) -> None:
    trusted = TrustedDocuments({sha(TRUSTED): TRUSTED})
    schema = build_schema(settings, extra_extensions=persisted_queries.schema_extensions(trusted))
    assert (await schema.execute(TRUSTED)).data == {"__typename": "Query"}
    refused = await schema.execute(UNTRUSTED)
    assert refused.errors and refused.errors[0].extensions == {"code": "OPERATION_NOT_TRUSTED"}
    # The streaming entry point (WebSocket and graphql-sse operations) answers with an error.
    results: list[Any] = [r async for r in await schema.stream(UNTRUSTED)]
    assert results[0].errors[0].extensions["code"] == "OPERATION_NOT_TRUSTED"


def test_a_manifest_whose_hash_and_document_disagree_stops_the_start(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({sha(TRUSTED): UNTRUSTED}))
    with pytest.raises(ValueError, match="SHA-256"):
        create_app(settings.model_copy(update={"trusted_documents": path}))
    apollo = tmp_path / "apollo.json"
    apollo.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{"id": sha(TRUSTED), "body": TRUSTED, "name": "Trusted"}],
            }
        )
    )
    assert TrustedDocuments.load(apollo).by_hash == {sha(TRUSTED): TRUSTED}


@pytest.fixture
def bounded_registration(app: Starlette, settings: Settings) -> Iterator[None]:
    """The running app's APQ with small registration bounds for one test (their limits keys
    carry the rates, unique per test run, so earlier runs on the same Redis do not count)."""
    view = _view(app)
    runtime = app.state.runtime
    unique = uuid.uuid4().int % 200
    small = settings.model_copy(
        update={
            "apq_max_document_bytes": 1024,
            "apq_register_bytes_client": f"{3000 + unique}/day",
            "apq_register_bytes_total": f"{100_000 + unique}/day",
        }
    )
    saved = view.persisted
    view.persisted = persisted_queries.for_settings(small, runtime.redis, None, runtime.rate_limits)
    try:
        yield
    finally:
        view.persisted = saved


async def _registered(client: httpx.AsyncClient, document: str) -> bool:
    ran = await client.post("/graphql", json={"query": document, "extensions": apq(document)})
    assert ran.json()["data"]["__typename"] == "Query", ran.json()  # it runs either way
    by_hash = await client.post("/graphql", json={"extensions": apq(document)})
    return "data" in by_hash.json()


async def test_registration_is_bounded_by_document_size_and_bytes_per_client(
    client: httpx.AsyncClient, bounded_registration: None
) -> None:
    padding = "# " + "x" * 1100 + "\n"
    assert not await _registered(client, padding + _unique("Big"))  # over the document bound
    stored = 0
    documents = [f"# {'y' * 600}\n" + _unique(f"Fill{i}") for i in range(6)]
    for document in documents:  # ~650 bytes each against a ~3,000-byte budget
        stored += await _registered(client, document)
    assert stored == 4, stored  # 4 x ~650 bytes fit the 3,000-3,199 budget; the rest do not
    assert not await _registered(client, documents[-1] + " ")  # still refused, still runs


async def test_the_in_process_store_is_bounded_in_bytes() -> None:
    store = MemoryDocumentStore(max_entries=100, ttl_seconds=60, max_bytes=100)
    for name in "abcd":
        await store.put(name, name * 40)
    assert store.bytes <= 100
    assert await store.get("a") is None and await store.get("d") == "d" * 40
