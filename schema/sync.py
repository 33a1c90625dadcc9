"""GraphQL types of sync: `syncPush` and `syncPull` (sync-protocol.md); the same JSON is served
at `POST /sync/push` and `POST /sync/pull`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from resolvers import sync as resolve
from schema.errors import ForbiddenError, InvalidInputError, UnauthenticatedError, user_error
from services.errors import DomainError


@strawberry.enum
class SyncStatus(Enum):
    APPLIED = "APPLIED"
    MERGED = "MERGED"
    REJECTED = "REJECTED"
    DUPLICATE = "DUPLICATE"
    OUT_OF_ORDER = "OUT_OF_ORDER"
    RETRY_LATER = "RETRY_LATER"


@strawberry.enum
class PatchOp(Enum):
    PUT = "PUT"
    DEL = "DEL"
    DROP_SCOPE = "DROP_SCOPE"


@strawberry.input
class SyncMutationInput:
    client_id: str
    id: int
    name: str
    args: JSON
    hlc: str = strawberry.field(description="<wall ms>-<counter>-<clientId>")
    base_version: int | None = None


@strawberry.input
class SyncPushInput:
    protocol_version: int
    client_group_id: str
    mutations: list[SyncMutationInput]


@strawberry.input
class SyncPullInput:
    protocol_version: int
    client_group_id: str
    cookie: str | None = None
    limit: int | None = strawberry.field(default=None, description="At most 1000.")
    checksums: bool = False


@strawberry.type
class SyncPatch:
    op: PatchOp
    scope: str
    type: str
    id: str
    version: int
    data: JSON | None = None


def _patch(raw: dict[str, Any]) -> SyncPatch:
    return SyncPatch(
        op=PatchOp(raw["op"]),
        scope=raw["scope"],
        type=raw["type"],
        id=raw["id"],
        version=raw["version"],
        data=raw.get("data"),
    )


@strawberry.type
class SyncMutationResult:
    client_id: str
    id: int
    status: SyncStatus
    code: str | None = None
    message: str | None = None
    first_status: SyncStatus | None = strawberry.field(
        default=None, description="On DUPLICATE: the status of its first application."
    )
    data: JSON | None = strawberry.field(default=None, description="e.g. conflictNoteId, jobId")
    canonical: list[SyncPatch] | None = None


@strawberry.type
class SyncPushSuccess:
    results: list[SyncMutationResult]
    last_mutation_ids: JSON = strawberry.field(description="{clientId: lastMutationId}")
    server_time: str


@strawberry.type
class SyncPullSuccess:
    cookie: str
    has_more: bool
    last_mutation_ids: JSON = strawberry.field(
        description="{clientId: lastMutationId}; exact on the last page (hasMore false)."
    )
    patches: list[SyncPatch]
    reset_scopes: list[str]
    checksums: JSON | None = None


SyncPushResult = Annotated[
    SyncPushSuccess | InvalidInputError | ForbiddenError | UnauthenticatedError,
    strawberry.union("SyncPushResult"),
]
SyncPullResult = Annotated[
    SyncPullSuccess | InvalidInputError | ForbiddenError | UnauthenticatedError,
    strawberry.union("SyncPullResult"),
]


def _mutation_body(input: SyncPushInput) -> dict[str, Any]:
    return {
        "protocolVersion": input.protocol_version,
        "clientGroupId": input.client_group_id,
        "mutations": [
            {
                "clientId": m.client_id,
                "id": m.id,
                "name": m.name,
                "args": m.args,
                "hlc": m.hlc,
                "baseVersion": m.base_version,
            }
            for m in input.mutations
        ],
    }


def _push_success(raw: dict[str, Any]) -> SyncPushSuccess:
    results = [
        SyncMutationResult(
            client_id=r["clientId"],
            id=r["id"],
            status=SyncStatus(r["status"]),
            code=r.get("code"),
            message=r.get("message"),
            first_status=SyncStatus(r["firstStatus"]) if r.get("firstStatus") else None,
            data=r.get("data"),
            canonical=[_patch(p) for p in r["canonical"]] if r.get("canonical") else None,
        )
        for r in raw["results"]
    ]
    return SyncPushSuccess(
        results=results, last_mutation_ids=raw["lastMutationIds"], server_time=raw["serverTime"]
    )


@strawberry.type
class SyncQuery:
    @strawberry.field(description="What changed in the viewer's scopes since the cookie.")
    async def sync_pull(self, info: Info, input: SyncPullInput) -> SyncPullResult:
        body = {
            "protocolVersion": input.protocol_version,
            "clientGroupId": input.client_group_id,
            "cookie": input.cookie,
            "limit": input.limit,
            "checksums": input.checksums,
        }
        try:
            raw = await resolve.sync_pull(info, body)
        except DomainError as error:
            return user_error(error)  # type: ignore[return-value]
        return SyncPullSuccess(
            cookie=raw["cookie"],
            has_more=raw["hasMore"],
            last_mutation_ids=raw["lastMutationIds"],
            patches=[_patch(p) for p in raw["patches"]],
            reset_scopes=raw["resetScopes"],
            checksums=raw.get("checksums"),
        )


@strawberry.type
class SyncMutation:
    @strawberry.mutation(
        description="Apply queued offline mutations, each once and in order per client."
    )
    async def sync_push(self, info: Info, input: SyncPushInput) -> SyncPushResult:
        try:
            raw = await resolve.sync_push(info, _mutation_body(input))
        except DomainError as error:
            return user_error(error)  # type: ignore[return-value]
        return _push_success(raw)


@strawberry.type(description="A scope of yours that changed, and its version after the commit.")
class SyncScopeVersion:
    scope: str
    version: int


@strawberry.type(
    description="Something you can see changed: pull. It carries no data. Pokes are "
    "at-most-once: pull when you (re)connect too."
)
class SyncPoke:
    scopes: list[SyncScopeVersion] = strawberry.field(
        description="The scopes one commit changed (empty on a resync)."
    )
    resync: bool = strawberry.field(
        description="Pokes may have been missed (the server reconnected to its broker, or you "
        "read too slowly): pull anyway."
    )


class _SyncPokes:
    """The resolver's pokes as GraphQL objects; closing it frees the subscription."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __aiter__(self) -> _SyncPokes:
        return self

    async def __anext__(self) -> SyncPoke:
        items = await self._stream.__anext__()
        if items is None:
            return SyncPoke(scopes=[], resync=True)
        return SyncPoke(
            scopes=[
                SyncScopeVersion(scope=str(item["scope"]), version=int(item["version"]))
                for item in items
            ],
            resync=False,
        )

    async def aclose(self) -> None:
        await self._stream.aclose()


@strawberry.type
class SyncSubscription:
    @strawberry.subscription(
        description="A poke after every commit that changes a scope you can see (another "
        "device's push, a web edit, a finished generation): then pull with `syncPull`."
    )
    async def sync_poke(self, info: Info) -> AsyncIterator[SyncPoke]:
        return _SyncPokes(await resolve.sync_poke(info))
