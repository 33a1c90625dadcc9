"""The wire format of push and pull (sync-protocol.md): parsing, limits, statuses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.errors import invalid

PROTOCOL_VERSION = 1
MAX_MUTATIONS = 1000
MAX_PUSH_BYTES = 1024 * 1024
MAX_PULL_LIMIT = 1000
DEFAULT_PULL_LIMIT = 500

APPLIED = "APPLIED"
MERGED = "MERGED"
REJECTED = "REJECTED"
DUPLICATE = "DUPLICATE"
OUT_OF_ORDER = "OUT_OF_ORDER"
RETRY_LATER = "RETRY_LATER"


@dataclass(slots=True)
class Mutation:
    client_id: str
    id: int
    name: str
    args: Any
    hlc: str
    base_version: int | None
    index: int  # position in the request


@dataclass(slots=True)
class PushRequest:
    client_group_id: str
    mutations: list[Mutation]


@dataclass(slots=True)
class PullRequest:
    client_group_id: str
    cookie: str | None
    limit: int
    checksums: bool


def _ident(value: Any, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable():
        raise invalid(f"{field}: 1 to 64 printable characters.", field)
    return value


def _version(body: dict[str, Any]) -> None:
    if body.get("protocolVersion") != PROTOCOL_VERSION:
        raise invalid(f"protocolVersion: this server speaks {PROTOCOL_VERSION}.", "protocolVersion")


def parse_push(body: Any, size: int | None = None) -> PushRequest:
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object.")
    if size is None:
        size = len(json.dumps(body, separators=(",", ":")))
    if size > MAX_PUSH_BYTES:
        raise invalid(f"A push may carry at most {MAX_PUSH_BYTES} bytes; send smaller batches.")
    _version(body)
    group = _ident(body.get("clientGroupId"), "clientGroupId")
    raw = body.get("mutations")
    if not isinstance(raw, list):
        raise invalid("mutations: a list.", "mutations")
    if len(raw) > MAX_MUTATIONS:
        raise invalid(f"A push may carry at most {MAX_MUTATIONS} mutations.", "mutations")
    mutations = []
    for index, item in enumerate(raw):
        where = f"mutations.{index}"
        if not isinstance(item, dict):
            raise invalid(f"{where}: an object.", where)
        mid = item.get("id")
        if not isinstance(mid, int) or isinstance(mid, bool) or mid < 1:
            raise invalid(f"{where}.id: a positive integer.", f"{where}.id")
        name = item.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 64:
            raise invalid(f"{where}.name: 1 to 64 characters.", f"{where}.name")
        hlc = item.get("hlc")
        if not isinstance(hlc, str):
            raise invalid(f"{where}.hlc: a string.", f"{where}.hlc")
        base = item.get("baseVersion")
        if base is not None and (not isinstance(base, int) or isinstance(base, bool)):
            raise invalid(f"{where}.baseVersion: an integer.", f"{where}.baseVersion")
        mutations.append(
            Mutation(
                client_id=_ident(item.get("clientId"), f"{where}.clientId"),
                id=mid,
                name=name,
                args=item.get("args"),
                hlc=hlc,
                base_version=base,
                index=index,
            )
        )
    return PushRequest(client_group_id=group, mutations=mutations)


def parse_pull(body: Any) -> PullRequest:
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object.")
    _version(body)
    group = _ident(body.get("clientGroupId"), "clientGroupId")
    cookie = body.get("cookie")
    if cookie is not None and (not isinstance(cookie, str) or len(cookie) > 65536):
        raise invalid("cookie: the string of a previous pull.", "cookie")
    limit = body.get("limit", DEFAULT_PULL_LIMIT)
    if limit is None:
        limit = DEFAULT_PULL_LIMIT
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PULL_LIMIT:
        raise invalid(f"limit: 1 to {MAX_PULL_LIMIT}.", "limit")
    return PullRequest(
        client_group_id=group,
        cookie=cookie,
        limit=limit,
        checksums=bool(body.get("checksums", False)),
    )


def retry_later(body: Any, size: int | None = None) -> dict[str, Any]:
    """The answer to a push that could not reach the database at all: every mutation
    RETRY_LATER (nothing was applied or the stored result could not be read; a retry gets the
    stored result as DUPLICATE), and no `lastMutationIds`: `{}` confirms nothing."""
    request = parse_push(body, size)
    message = "The server cannot apply changes right now; push again later."
    return {
        "results": [
            {"clientId": m.client_id, "id": m.id, "status": RETRY_LATER, "message": message}
            for m in request.mutations
        ],
        "lastMutationIds": {},
        "serverTime": datetime.now(UTC).isoformat(),
    }
