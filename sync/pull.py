"""Pull: the rows of every scope the user may see that changed after the cookie, in one
consistent snapshot, ordered by (scope, version, type, id) and paginated by `limit`."""

from __future__ import annotations

import hashlib
import json
import uuid
from json.encoder import encode_basestring_ascii
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

from models import SyncEntry, SyncScope, bulk
from replicas import routing as replicas
from services import scopes
from services.accounts import Viewer
from settings import Settings
from sync import cookie as cookies
from sync import gc
from sync.cookie import ScopeState
from sync.protocol import PullRequest, parse_pull
from sync.push import bind_group, last_mutation_ids

_text = encode_basestring_ascii


async def accessible_scopes(user_id: uuid.UUID, db: Any = None) -> set[str]:
    """The user's scope and those of the live courses it owns or is a member of (one query)."""
    db = db or connections.get("default")
    p = bulk.placeholder(db, 1)
    rows = await db.execute_query_dict(
        f"SELECT id FROM courses WHERE owner_id = {p} AND deleted_at IS NULL UNION "  # noqa: S608
        "SELECT m.course_id FROM course_members m JOIN courses c ON c.id = m.course_id "
        f"WHERE m.user_id = {p} AND c.deleted_at IS NULL",
        bulk.params(db, [user_id, user_id]) if bulk.is_sqlite(db) else [user_id],
    )
    ids = {str(row["id"]) for row in rows}
    return {scopes.user_scope(user_id)} | {scopes.course_scope(c) for c in ids}


async def _ensure(keys: set[str]) -> None:
    """Scopes touched for the first time get their current rows as entries (a write)."""
    present = set(
        await SyncScope.filter(key__in=list(keys), version__gt=0).values_list("key", flat=True)
    )
    for key in sorted(keys - present):
        async with in_transaction():
            await scopes.lock(key)


def checksum(rows: list[tuple[str, str, int]]) -> str:
    """Of a scope's live rows: sha256 over sorted `type:id:version` lines, first 16 hex digits."""
    text = "\n".join(f"{t}:{i}:{v}" for t, i, v in sorted(rows))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# A patch as read: (scope, type, id, version, op, stored JSON text of the data or None).
Row = tuple[str, str, str, int, str, str | None]


class Page(dict[str, Any]):
    """A pull's answer. Its patches are kept as read (`rows`): an entry's data is stored as JSON
    and goes out as it is stored, never parsed and encoded again."""

    rows: list[Row]

    @property
    def patches_json(self) -> list[str]:
        return [_patch_json(*row) for row in self.rows]

    def as_json(self) -> bytes:
        """The answer's JSON, with the stored texts spliced in."""
        head = json.dumps({k: v for k, v in self.items() if k != "patches"}, separators=(",", ":"))
        return f'{head[:-1]},"patches":[{",".join(self.patches_json)}]}}'.encode()

    def parsed(self) -> dict[str, Any]:
        """The answer as plain data (GraphQL's JSON scalar)."""
        return {**self, "patches": [json.loads(text) for text in self.patches_json]}


def _patch_json(scope: str, kind: str, ident: str, version: int, op: str, data: str | None) -> str:
    head = (
        f'{{"op":"{op}","scope":{_text(scope)},"type":{_text(kind)},"id":{_text(ident)},'
        f'"version":{int(version)}'
    )
    if op == "PUT" and data is not None:
        return f'{head},"data":{data}}}'
    return head + "}"


async def _entries(db: Any, scope: str, state: ScopeState, limit: int) -> list[dict[str, Any]]:
    """The scope's entries after the state's cursor, in (version, type, id) order."""
    p = bulk.placeholder
    where = f"scope = {p(db, 1)}"
    args: list[Any] = [scope]
    if state.cursor is None:
        where += f" AND version > {p(db, 2)}"
        args.append(state.version)
    else:
        v, kind, ident = state.cursor
        # Row comparison, as the (scope, version, type, entity_id) index is ordered.
        where += f" AND (version, type, entity_id) > ({p(db, 2)}, {p(db, 3)}, {p(db, 4)})"
        args += [v, kind, ident]
    if state.whole:
        where += " AND op = 'PUT'"
    query = (
        "SELECT type, entity_id, version, op, data FROM sync_entries "  # noqa: S608
        f"WHERE {where} ORDER BY version, type, entity_id LIMIT {int(limit)}"
    )
    return await db.execute_query_dict(query, args)


async def pull(viewer: Viewer, body: Any, settings: Settings) -> Page:
    request = parse_pull(body)
    await bind_group(request.client_group_id, viewer.id)
    states = cookies.decode(request.cookie, settings.signing_key)
    await gc.maybe_collect(settings)
    for _ in range(3):
        page = await _snapshot(viewer, request, states, settings)
        if isinstance(page, Page):
            return page
        # Scopes seen for the first time are back-filled (a write), outside the snapshot; the
        # next snapshot sees them (read-your-writes: the primary, until a replica has them).
        await _ensure(page)
        await replicas.wrote(viewer.id)
    await _ensure(await accessible_scopes(viewer.id))
    await replicas.wrote(viewer.id)
    page = await _snapshot(viewer, request, states, settings)
    if not isinstance(page, Page):
        raise RuntimeError("sync scopes kept appearing during a pull")
    return page


async def _snapshot(
    viewer: Viewer, request: PullRequest, states: dict[str, ScopeState], settings: Settings
) -> Page | set[str]:
    """The page, read from a replica when one may serve the viewer (replicas/routing.py)."""
    async with replicas.reads(viewer.id):
        return await _page(viewer, request, states, settings)


async def _page(
    viewer: Viewer, request: PullRequest, states: dict[str, ScopeState], settings: Settings
) -> Page | set[str]:
    """The page, in one snapshot; or the scopes that must be back-filled first."""
    states = dict(states)
    async with in_transaction() as connection:
        if connections.get("default").capabilities.dialect != "sqlite":
            await connection.execute_script(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"
            )
        reachable = await accessible_scopes(viewer.id, connection)
        rows = await SyncScope.filter(key__in=list(reachable)).values(
            "key", "version", "gc_version"
        )
        current = {row["key"]: (int(row["version"]), int(row["gc_version"])) for row in rows}
        missing = {key for key in reachable if current.get(key, (0, 0))[0] == 0}
        if missing:
            return missing
        patches: list[Row] = []
        for key in sorted(set(states) - set(current)):
            patches.append((key, "", "", 0, "DROP_SCOPE", None))
            del states[key]
        resets: list[str] = []
        for key, (_, gc_version) in current.items():
            state = states.get(key)
            if state is None:
                states[key] = ScopeState(whole=True)  # gained: sent whole
            elif not state.whole and state.version < gc_version:
                resets.append(key)  # tombstones it has not seen are gone: start over
                states[key] = ScopeState(whole=True)
        room = request.limit
        has_more = False
        for key in sorted(current):
            state, (version, _) = states[key], current[key]
            if state.cursor is None and version <= state.version:
                continue
            if room == 0:
                has_more = True
                break
            found = await _entries(connection, key, state, room + 1)
            if len(found) > room:
                found = found[:room]
                last = found[-1]
                state.cursor = (int(last["version"]), last["type"], last["entity_id"])
                has_more = True
            else:
                states[key] = ScopeState(version=version)
            patches.extend(
                (key, r["type"], r["entity_id"], int(r["version"]), r["op"], r["data"])
                for r in found
            )
            room -= len(found)
        lmids = await last_mutation_ids(request.client_group_id)
        sums: dict[str, str] | None = None
        if request.checksums and not has_more:
            sums = {}
            for key in sorted(current):
                live = await SyncEntry.filter(scope=key, op="PUT").values_list(
                    "type", "entity_id", "version"
                )
                sums[key] = checksum([(str(t), str(i), int(v)) for t, i, v in live])
    result = Page(
        cookie=cookies.encode(states, settings.signing_key),
        hasMore=has_more,
        lastMutationIds=lmids,
        resetScopes=sorted(resets),
    )
    if sums is not None:
        result["checksums"] = sums
    result.rows = patches
    return result
