"""Automatic persisted queries (Apollo's APQ protocol) and trusted documents.

APQ: a client sends `extensions.persistedQuery = {"version": 1, "sha256Hash": "<hex>"}`.
- hash only: the stored document runs; unknown → `PersistedQueryNotFound` (code
  PERSISTED_QUERY_NOT_FOUND, HTTP 200 and `Cache-Control: no-cache`, as Apollo Server answers
  and Apollo clients expect: they then send the hash with the document);
- hash and document: the hash must be the document's SHA-256 (else 400
  PERSISTED_QUERY_HASH_MISMATCH); a document that parses is stored, then it runs.
Over POST and GET (`?extensions=…`, the CDN-friendly form). Documents live in Redis
(`<namespace>:apq:<hash>`, `apq_ttl_seconds`, refreshed when used) when REDIS_URL is set, in an
in-process LRU otherwise (bounded by count and bytes). Registration is bounded because anyone
may register: a document over `apq_max_document_bytes` runs but is not stored, and the bytes
stored per client IP and in all are rate-limited (`apq_register_bytes_client`,
`apq_register_bytes_total`); a registration past them runs and is not stored (the client just
sends the document again next time, as Apollo clients do on PersistedQueryNotFound), so Redis
holds at most the total rate over the time to live. If Redis is unreachable a lookup answers
"not found" (the client sends the document and the request runs) and nothing is stored: APQ
saves bytes, never availability.

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
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from graphql import GraphQLError, parse
from redis.exceptions import RedisError
from starlette.responses import JSONResponse
from strawberry.extensions import SchemaExtension
from strawberry.http import GraphQLRequestData

import keyspace
from services.errors import DomainError
from services.rate_limits import RateLimits
from settings import Settings

log = logging.getLogger("coursegen.persisted_queries")

APQ_VERSION = 1
_HASH = re.compile(r"^[0-9a-f]{64}$")


def _redis_key(sha: str) -> str:
    return keyspace.key("apq", sha)


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

    def __init__(self, max_entries: int, ttl_seconds: float, max_bytes: int | None = None) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self.max_bytes = max_bytes
        self.bytes = 0
        self._documents: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def get(self, sha: str) -> str | None:
        entry = self._documents.get(sha)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._documents[sha]
            self.bytes -= len(entry[1])
            return None
        self._documents[sha] = (time.monotonic() + self.ttl, entry[1])
        self._documents.move_to_end(sha)
        return entry[1]

    async def put(self, sha: str, document: str) -> None:
        old = self._documents.pop(sha, None)
        if old is not None:
            self.bytes -= len(old[1])
        self._documents[sha] = (time.monotonic() + self.ttl, document)
        self.bytes += len(document)
        while len(self._documents) > self.max_entries or (
            self.max_bytes is not None and self.bytes > self.max_bytes
        ):
            _, (_, evicted) = self._documents.popitem(last=False)
            self.bytes -= len(evicted)


class RedisDocumentStore:
    """Documents in Redis, shared by every web process; a use renews the time to live."""

    def __init__(self, client: Any, ttl_seconds: int) -> None:
        self.client = client
        self.ttl = ttl_seconds

    async def get(self, sha: str) -> str | None:
        try:
            value = await self.client.getex(_redis_key(sha), ex=self.ttl)
        except RedisError as error:
            log.warning("APQ lookup unavailable (%s): answering not found", error)
            return None
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def put(self, sha: str, document: str) -> None:
        try:
            await self.client.set(_redis_key(sha), document, ex=self.ttl)
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
    admit: Callable[[int], Awaitable[bool]] | None = None,
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
    # Junk is not kept (it still runs, to say what is wrong), nor what is over the bounds. A
    # document stored already (by the fast path's lookup of this very request, or another
    # client) is not charged again.
    if not _parses(query, max_tokens):
        return query
    if admit is None or (await store.get(sha) is None and await admit(len(query.encode()))):
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
        bounds: RegistrationBounds | None = None,
    ) -> None:
        self.store = store
        self.trusted = trusted
        self.max_tokens = max_tokens
        self.bounds = bounds

    def admission(self, client: str) -> Callable[[int], Awaitable[bool]] | None:
        if self.bounds is None:
            return None
        bounds = self.bounds

        async def admit(size: int) -> bool:
            return await bounds.admit(client, size)

        return admit

    async def resolve(
        self, data: GraphQLRequestData | list[GraphQLRequestData], client: str = "unknown"
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """The request(s) with each document resolved (a batch: every operation)."""
        if isinstance(data, list):
            return [await self._one(item, client) for item in data]
        return await self._one(data, client)

    async def _one(self, data: GraphQLRequestData, client: str) -> GraphQLRequestData:
        document = await resolve_document(
            data.query,
            data.extensions,
            store=self.store,
            trusted=self.trusted,
            max_tokens=self.max_tokens,
            admit=self.admission(client),
        )
        return data if document is data.query else dataclasses.replace(data, query=document)


class RegistrationBounds:
    """What one client and everyone together may store: bytes per window (limits' weighted
    sliding window, shared in Redis when the rate limits are), and a size per document."""

    def __init__(self, settings: Settings, limits: RateLimits) -> None:
        self.settings = settings
        self.limits = limits

    async def admit(self, client: str, size: int) -> bool:
        settings = self.settings
        if size > settings.apq_max_document_bytes:
            log.info("APQ registration refused: %d bytes is over the document bound", size)
            return False
        try:
            await self.limits.charge(
                "apq-bytes-client", settings.apq_register_bytes_client, size, client
            )
            await self.limits.charge("apq-bytes-total", settings.apq_register_bytes_total, size)
        except DomainError:
            log.info("APQ registration refused: byte budget spent (client %s)", client)
            return False
        return True


def load_trusted(settings: Settings) -> TrustedDocuments | None:
    """The manifest named by `trusted_documents`, read (and checked) once at start-up."""
    if settings.trusted_documents is None:
        return None
    return TrustedDocuments.load(settings.trusted_documents)


def for_settings(
    settings: Settings,
    redis: Any | None,
    trusted: TrustedDocuments | None,
    limits: RateLimits | None = None,
) -> PersistedQueries:
    """Redis-backed APQ when there is a client, an in-process LRU otherwise; registrations
    bounded through `limits` (the runtime's rate limits) when given."""
    store: DocumentStore | None = None
    if settings.apq_enabled:
        store = (
            RedisDocumentStore(redis, settings.apq_ttl_seconds)
            if redis is not None
            else MemoryDocumentStore(
                settings.apq_cache_size, settings.apq_ttl_seconds, settings.apq_cache_bytes
            )
        )
    bounds = RegistrationBounds(settings, limits) if limits is not None else None
    return PersistedQueries(store, trusted, settings.max_query_tokens, bounds)


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
