"""Automatic persisted queries (Apollo's APQ protocol) and trusted documents.

APQ: a client sends `extensions.persistedQuery = {"version": 1, "sha256Hash": "<hex>"}`.
- hash only: the stored document runs; unknown → `PersistedQueryNotFound` (code
  PERSISTED_QUERY_NOT_FOUND, HTTP 200 and `Cache-Control: no-cache`, as Apollo Server answers
  and Apollo clients expect: they then send the hash with the document);
- hash and document: the hash must be the document's SHA-256 (else 400
  PERSISTED_QUERY_HASH_MISMATCH); a document that parses is stored, then it runs.
Over POST and GET (`?extensions=…`, the CDN-friendly form). Documents live in Redis
(`coursegen:apq:<hash>`, `apq_ttl_seconds`, refreshed when used) when REDIS_URL is set, in an
in-process LRU otherwise. If Redis is unreachable a lookup answers "not found" (the client
sends the document and the request runs) and nothing is stored: APQ saves bytes, never
availability.

Trusted documents (`trusted_documents`: a manifest written at deploy time): only the
documents of the manifest run, asked for by hash (no registration) or sent as identical text;
anything else is refused with OPERATION_NOT_TRUSTED (HTTP 403 over HTTP; an error result over
WebSocket and SSE, where `TrustedDocumentsOnly` checks every operation's text).

`resolve_document` is the one lookup: the HTTP view calls it before executing; so can any
other executor of the same requests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from graphql import GraphQLError, parse
from redis.exceptions import RedisError
from starlette.responses import JSONResponse
from strawberry.extensions import SchemaExtension
from strawberry.http import GraphQLRequestData

from settings import Settings

log = logging.getLogger("coursegen.persisted_queries")

APQ_VERSION = 1
_HASH = re.compile(r"^[0-9a-f]{64}$")
_REDIS_PREFIX = "coursegen:apq:"

NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
HASH_MISMATCH = "PERSISTED_QUERY_HASH_MISMATCH"
INVALID = "PERSISTED_QUERY_INVALID"
NOT_TRUSTED = "OPERATION_NOT_TRUSTED"


class PersistedQueryError(Exception):
    """A request the persisted-document rules refuse, with its stable code and HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def response(self) -> JSONResponse:
        body = {"errors": [{"message": self.message, "extensions": {"code": self.code}}]}
        # Never cached: the next request (with the document) must reach the server.
        headers = {"Cache-Control": "private, no-cache, must-revalidate"}
        return JSONResponse(body, status_code=self.status, headers=headers)


def not_trusted() -> PersistedQueryError:
    return PersistedQueryError(
        NOT_TRUSTED,
        "This server runs only the operations registered at deploy time (trusted documents); "
        "this one is not among them.",
        403,
    )


def sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


class DocumentStore(Protocol):
    async def get(self, sha: str) -> str | None: ...
    async def put(self, sha: str, document: str) -> None: ...


class MemoryDocumentStore:
    """An in-process LRU with a time to live per document."""

    def __init__(self, max_entries: int, ttl_seconds: float) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self._documents: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def get(self, sha: str) -> str | None:
        entry = self._documents.get(sha)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._documents[sha]
            return None
        self._documents[sha] = (time.monotonic() + self.ttl, entry[1])
        self._documents.move_to_end(sha)
        return entry[1]

    async def put(self, sha: str, document: str) -> None:
        self._documents[sha] = (time.monotonic() + self.ttl, document)
        self._documents.move_to_end(sha)
        while len(self._documents) > self.max_entries:
            self._documents.popitem(last=False)


class RedisDocumentStore:
    """Documents in Redis, shared by every web process; a use renews the time to live."""

    def __init__(self, client: Any, ttl_seconds: int) -> None:
        self.client = client
        self.ttl = ttl_seconds

    async def get(self, sha: str) -> str | None:
        try:
            value = await self.client.getex(_REDIS_PREFIX + sha, ex=self.ttl)
        except RedisError as error:
            log.warning("APQ lookup unavailable (%s): answering not found", error)
            return None
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def put(self, sha: str, document: str) -> None:
        try:
            await self.client.set(_REDIS_PREFIX + sha, document, ex=self.ttl)
        except RedisError as error:
            log.warning("APQ registration skipped (%s)", error)


@dataclasses.dataclass(frozen=True)
class TrustedDocuments:
    """The manifest of documents this deployment runs, by SHA-256."""

    by_hash: Mapping[str, str]

    @classmethod
    def load(cls, path: Path) -> TrustedDocuments:
        """Read `{"<sha256>": "<document>"}` or Apollo's persisted query manifest
        (`{"format": "apollo-persisted-query-manifest", "operations": [{"id", "body"}]}`),
        refusing a manifest whose hash and document disagree (ValueError)."""
        raw = json.loads(path.read_text())
        if isinstance(raw, dict) and isinstance(raw.get("operations"), list):
            pairs = [(str(op.get("id", "")), op.get("body")) for op in raw["operations"]]
        elif isinstance(raw, dict):
            pairs = list(raw.items())
        else:
            raise ValueError(f"{path}: expected a JSON object of sha256 → document")
        documents: dict[str, str] = {}
        for sha, document in pairs:
            if not isinstance(document, str) or sha.lower() != sha256(document):
                raise ValueError(f"{path}: the entry {sha[:16]}… is not its document's SHA-256")
            documents[sha.lower()] = document
        return cls(documents)

    def allows(self, document: str) -> bool:
        return sha256(document) in self.by_hash


def _persisted_hash(extensions: Mapping[str, Any] | None) -> str | None:
    if not extensions or "persistedQuery" not in extensions:
        return None
    persisted = extensions["persistedQuery"]
    if not isinstance(persisted, Mapping):
        raise PersistedQueryError(INVALID, "`extensions.persistedQuery` must be an object.", 400)
    if persisted.get("version") != APQ_VERSION:
        raise PersistedQueryError(
            INVALID, f"Unsupported persisted query version; send version {APQ_VERSION}.", 400
        )
    sha = persisted.get("sha256Hash")
    if not isinstance(sha, str) or not _HASH.match(sha.lower()):
        raise PersistedQueryError(
            INVALID, "`sha256Hash` must be the document's SHA-256 in 64 hex digits.", 400
        )
    return sha.lower()


async def resolve_document(
    query: str | None,
    extensions: Mapping[str, Any] | None,
    *,
    store: DocumentStore | None,
    trusted: TrustedDocuments | None = None,
    max_tokens: int | None = None,
) -> str | None:
    """The document a request runs: its own text, or the one its persisted-query hash names.

    Raises PersistedQueryError as described in the module docstring. `store` None: APQ off.
    """
    sha = _persisted_hash(extensions)
    if sha is None:
        if trusted is not None and query is not None and not trusted.allows(query):
            raise not_trusted()
        return query
    if query is not None and sha256(query) != sha:
        raise PersistedQueryError(
            HASH_MISMATCH, "The sha256Hash is not the SHA-256 of the query sent with it.", 400
        )
    if trusted is not None:
        document = trusted.by_hash.get(sha)
        if document is None:
            raise not_trusted()
        return document
    if store is None:
        raise PersistedQueryError(NOT_SUPPORTED, "PersistedQueryNotSupported", 200)
    if query is None:
        document = await store.get(sha)
        if document is None:
            raise PersistedQueryError(NOT_FOUND, "PersistedQueryNotFound", 200)
        return document
    if _parses(query, max_tokens):  # junk is not kept; it still runs, to say what is wrong
        await store.put(sha, query)
    return query


def _parses(document: str, max_tokens: int | None) -> bool:
    try:
        parse(document, no_location=True, max_tokens=max_tokens)
    except GraphQLError:
        return False
    return True


class PersistedQueries:
    """What the HTTP view needs: the store (None: APQ off) and the trusted manifest."""

    def __init__(
        self,
        store: DocumentStore | None,
        trusted: TrustedDocuments | None = None,
        max_tokens: int | None = None,
    ) -> None:
        self.store = store
        self.trusted = trusted
        self.max_tokens = max_tokens

    async def resolve(
        self, data: GraphQLRequestData | list[GraphQLRequestData]
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """The request(s) with each document resolved (a batch: every operation)."""
        if isinstance(data, list):
            return [await self._one(item) for item in data]
        return await self._one(data)

    async def _one(self, data: GraphQLRequestData) -> GraphQLRequestData:
        document = await resolve_document(
            data.query,
            data.extensions,
            store=self.store,
            trusted=self.trusted,
            max_tokens=self.max_tokens,
        )
        return data if document is data.query else dataclasses.replace(data, query=document)


def load_trusted(settings: Settings) -> TrustedDocuments | None:
    """The manifest named by `trusted_documents`, read (and checked) once at start-up."""
    if settings.trusted_documents is None:
        return None
    return TrustedDocuments.load(settings.trusted_documents)


def for_settings(
    settings: Settings, redis: Any | None, trusted: TrustedDocuments | None
) -> PersistedQueries:
    """Redis-backed APQ when there is a client, an in-process LRU otherwise."""
    store: DocumentStore | None = None
    if settings.apq_enabled:
        store = (
            RedisDocumentStore(redis, settings.apq_ttl_seconds)
            if redis is not None
            else MemoryDocumentStore(settings.apq_cache_size, settings.apq_ttl_seconds)
        )
    return PersistedQueries(store, trusted, settings.max_query_tokens)


def schema_extensions(trusted: TrustedDocuments | None) -> list[type[SchemaExtension]]:
    return [] if trusted is None else [trusted_documents_only(trusted)]


def trusted_documents_only(trusted: TrustedDocuments) -> type[SchemaExtension]:
    """A schema extension refusing any operation whose text is not in the manifest: the
    check for transports that do not go through the HTTP view (WebSocket, graphql-sse)."""

    class TrustedDocumentsOnly(SchemaExtension):
        # Checked as execution starts: an error raised there becomes an error result on
        # every transport (raised earlier, a WebSocket operation would just end).
        def on_execute(self) -> Iterator[None]:
            query = self.execution_context.query
            if query is not None and not trusted.allows(query):
                error = not_trusted()
                raise GraphQLError(error.message, extensions={"code": error.code})
            yield

    return TrustedDocumentsOnly
