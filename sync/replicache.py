"""Replicache's push/pull HTTP protocol, version 1, mapped onto our sync (docs/replicache.md).

An unmodified Replicache client (npm `replicache`) syncs with `/replicache/push` and
`/replicache/pull`; the same mutators, scopes, conflict rules and guarantees apply as on
`/sync/*`, since both go through `sync.push.push` and `sync.pull.pull`.

Mapping:
- Push: each `MutationV1` becomes one of ours (`clientID` → `clientId`, `id`, `name`, `args`).
  Replicache's `timestamp` is the client's `performance.now()`, not a wall clock, so the clock
  of a mutation is the server's at receipt (`<now ms>-<position>-<clientID>`): between devices,
  the last change to reach the server wins, as Replicache's own model has it. `saveNote` takes
  its `baseVersion` from `args.baseVersion` (a note's value carries its `version`).
- Pull: our pages are read to the end (at most `MAX_PAGES` of `PAGE_ROWS`) and sent as one
  patch; `lastMutationIDChanges` comes from the last page, which is exact. Keys: `<type>/<id>`
  (`course/…`, `subject/…`, `topic/…`, `progress/<topicId>`, `note/…`, `bookmark/<topicId>`),
  and `member/<courseId>/<userId>`; a value is the row's data as stored. A scope the user lost
  (`DROP_SCOPE`) becomes a `del` of each of its keys; a scope reset by garbage collection, or a
  first pull, starts with `clear` and gets everything.
- Cookie: `{"order": n, "c": <our cookie>, "m": <digest of the group's last mutation ids>}`.
  `order` grows by one whenever the answer differs, so it never goes back (Replicache refuses
  a cookie older than the one it holds); an answer with nothing new returns the cookie as it
  came, with an empty patch, as Replicache requires.
"""

from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring_ascii
from typing import Any

from tortoise import connections

from models import bulk
from services.accounts import Viewer
from services.errors import DomainError, ErrorCode, invalid
from settings import Settings
from sync import protocol
from sync import pull as pulls
from sync import push as pushes
from sync.hlc import server_now_ms

VERSION = 1
PAGE_ROWS = protocol.MAX_PULL_LIMIT
MAX_PAGES = 50

CLIENT_STATE_NOT_FOUND = {"error": "ClientStateNotFound"}

_text = encode_basestring_ascii
# Our wire names in validation errors, as a Replicache client spells them.
_NAMES = {"clientGroupId": "clientGroupID", "clientId": "clientID"}


def version_not_supported(kind: str) -> dict[str, Any]:
    return {"error": "VersionNotSupported", "versionType": kind}


def key_of(scope: str, kind: str, ident: str) -> str:
    if kind == "member":  # a user id: unique only within its course
        return f"member/{scope.partition(':')[2]}/{ident}"
    return f"{kind}/{ident}"


def _respelled(error: DomainError) -> DomainError:
    message, field = error.message, error.field
    for ours, theirs in _NAMES.items():
        message = message.replace(ours, theirs)
        field = field.replace(ours, theirs) if field else field
    return invalid(message, field) if error.code is ErrorCode.INVALID_INPUT else error


def _mutations(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("mutations")
    if not isinstance(raw, list):
        raise invalid("mutations: a list.", "mutations")
    if len(raw) > protocol.MAX_MUTATIONS:
        raise invalid(f"A push may carry at most {protocol.MAX_MUTATIONS} mutations.", "mutations")
    now = server_now_ms()
    ours = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise invalid(f"mutations.{index}: an object.", f"mutations.{index}")
        client = item.get("clientID")
        args = item.get("args")
        base = None
        if isinstance(args, dict) and "baseVersion" in args:
            args = dict(args)
            base = args.pop("baseVersion")
        ours.append(
            {
                "clientId": client,
                "id": item.get("id"),
                "name": item.get("name"),
                "args": args,
                "hlc": f"{now}-{index}-{client}",
                "baseVersion": base,
            }
        )
    return ours


async def push(
    viewer: Viewer, body: Any, env: pushes.SyncEnv, size: int | None = None
) -> dict[str, Any]:
    """A `PushRequestV1` applied; our answer (`results`, `lastMutationIds`) or a Replicache
    error object. A retry of what was applied is answered DUPLICATE and changes nothing."""
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object.")
    if body.get("pushVersion") != VERSION:
        return version_not_supported("push")
    try:
        ours = {
            "protocolVersion": protocol.PROTOCOL_VERSION,
            "clientGroupId": body.get("clientGroupID"),
            "mutations": _mutations(body),
        }
        return await pushes.push(viewer, ours, env, size)
    except DomainError as error:
        raise _respelled(error) from None


def _cookie(raw: Any) -> tuple[int, str | None, str | None] | None:
    """(order, our cookie, mutation digest) of a cookie we issued; None if it is not one."""
    if raw is None:
        return 0, None, None
    if not isinstance(raw, dict) or set(raw) != {"order", "c", "m"}:
        return None
    order, ours, digest = raw["order"], raw["c"], raw["m"]
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        return None
    if not isinstance(ours, str) or not isinstance(digest, str):
        return None
    return order, ours, digest


async def _group_known(group: str) -> bool:
    db = connections.get("default")
    rows = await db.execute_query_dict(
        f"SELECT 1 FROM sync_client_groups WHERE id = {bulk.placeholder(db, 1)}",  # noqa: S608
        [group],
    )
    return bool(rows)


async def _scope_keys(scope: str) -> list[str]:
    """Every key a client may hold of a scope (its entries, tombstones included)."""
    db = connections.get("default")
    rows = await db.execute_query_dict(
        "SELECT type, entity_id FROM sync_entries "  # noqa: S608
        f"WHERE scope = {bulk.placeholder(db, 1)}",
        [scope],
    )
    return [key_of(scope, row["type"], row["entity_id"]) for row in rows]


def _digest(lmids: dict[str, int]) -> str:
    text = json.dumps(sorted(lmids.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def pull(viewer: Viewer, body: Any, settings: Settings) -> bytes | dict[str, Any]:
    """A `PullRequestV1` answered: the `PullResponseV1` as JSON text (stored data spliced in),
    or a Replicache error object."""
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object.")
    if body.get("pullVersion") != VERSION:
        return version_not_supported("pull")
    group = body.get("clientGroupID")
    base = _cookie(body.get("cookie"))
    if base is None:
        return CLIENT_STATE_NOT_FOUND
    order, ours, digest = base
    # A group we never saw, with a cookie: the server lost it (or it was never ours).
    if ours is not None and isinstance(group, str) and not await _group_known(group):
        return CLIENT_STATE_NOT_FOUND
    ops: list[str] = ['{"op":"clear"}'] if ours is None else []
    cursor, cleared = ours, ours is None
    lmids: dict[str, int] = {}
    capped = True
    for _ in range(MAX_PAGES):
        request = {
            "protocolVersion": protocol.PROTOCOL_VERSION,
            "clientGroupId": group,
            "cookie": cursor,
            "limit": PAGE_ROWS,
        }
        try:
            page = await pulls.pull(viewer, request, settings)
        except DomainError as error:
            if error.field == "cookie":
                return CLIENT_STATE_NOT_FOUND
            raise _respelled(error) from None
        if page["resetScopes"] and not cleared:
            # Tombstones this client has not seen were collected: start over, whole.
            ops, cursor, cleared = ['{"op":"clear"}'], None, True
            continue
        for scope, kind, ident, _version, op, data in page.rows:
            if op == "DROP_SCOPE":
                ops.extend(f'{{"op":"del","key":{_text(k)}}}' for k in await _scope_keys(scope))
            elif op == "PUT" and data is not None:
                key = _text(key_of(scope, kind, ident))
                ops.append(f'{{"op":"put","key":{key},"value":{data}}}')
            else:
                ops.append(f'{{"op":"del","key":{_text(key_of(scope, kind, ident))}}}')
        cursor = page["cookie"]
        if not page["hasMore"]:
            lmids, capped = page["lastMutationIds"], False
            break
    # Still more after MAX_PAGES: what was read goes out and no mutation is confirmed (only
    # the last page's ids are exact); the next pull goes on from there.
    new_digest = (digest or "") if capped else _digest(lmids)
    head: dict[str, Any]
    if not ops and cursor == ours and new_digest == digest:
        head = {"cookie": body.get("cookie"), "lastMutationIDChanges": {}}
    else:
        cookie = {"order": order + 1, "c": cursor, "m": new_digest}
        head = {"cookie": cookie, "lastMutationIDChanges": lmids}
    text = json.dumps(head, separators=(",", ":"))
    return f'{text[:-1]},"patch":[{",".join(ops)}]}}'.encode()
