"""Pull: the rows of every scope the user may see that changed after the cookie, in one
consistent snapshot, ordered by (scope, version, type, id) and paginated by `limit`."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from tortoise import connections
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models import Course, CourseMember, SyncEntry, SyncScope
from services import scopes
from services.accounts import Viewer
from settings import Settings
from sync import cookie as cookies
from sync import gc
from sync.cookie import ScopeState
from sync.protocol import parse_pull
from sync.push import bind_group, entry_patch, last_mutation_ids


async def accessible_scopes(user_id: uuid.UUID) -> set[str]:
    owned = await Course.filter(owner_id=user_id, deleted_at=None).values_list("id", flat=True)
    shared = await CourseMember.filter(user_id=user_id, course__deleted_at=None).values_list(
        "course_id", flat=True
    )
    return {scopes.user_scope(user_id)} | {scopes.course_scope(str(c)) for c in [*owned, *shared]}


async def _ensure(keys: set[str]) -> None:
    """Scopes touched for the first time get their current rows as entries (a write)."""
    present = set(
        await SyncScope.filter(key__in=list(keys), version__gt=0).values_list("key", flat=True)
    )
    for key in sorted(keys - present):
        async with in_transaction():
            await scopes.lock(key)


def _after(state: ScopeState) -> Q:
    if state.cursor is None:
        return Q(version__gt=state.version)
    v, kind, ident = state.cursor
    return (
        Q(version__gt=v)
        | Q(version=v, type__gt=kind)
        | Q(version=v, type=kind, entity_id__gt=ident)
    )


def checksum(rows: list[tuple[str, str, int]]) -> str:
    """Of a scope's live rows: sha256 over sorted `type:id:version` lines, first 16 hex digits."""
    text = "\n".join(f"{t}:{i}:{v}" for t, i, v in sorted(rows))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def pull(viewer: Viewer, body: Any, settings: Settings) -> dict[str, Any]:
    request = parse_pull(body)
    await bind_group(request.client_group_id, viewer.id)
    states = cookies.decode(request.cookie, settings.signing_key)
    await gc.maybe_collect(settings)
    await _ensure(await accessible_scopes(viewer.id))
    async with in_transaction() as connection:
        if connections.get("default").capabilities.dialect != "sqlite":
            await connection.execute_script(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"
            )
        reachable = await accessible_scopes(viewer.id)
        rows = await SyncScope.filter(key__in=list(reachable)).values(
            "key", "version", "gc_version"
        )
        current = {row["key"]: (int(row["version"]), int(row["gc_version"])) for row in rows}
        patches: list[dict[str, Any]] = []
        for key in sorted(set(states) - set(current)):
            patches.append({"op": "DROP_SCOPE", "scope": key, "type": "", "id": "", "version": 0})
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
            query = SyncEntry.filter(Q(scope=key) & _after(state))
            if state.whole:
                query = query.filter(op="PUT")
            found = await query.order_by("version", "type", "entity_id").limit(room + 1)
            if len(found) > room:
                found = found[:room]
                last = found[-1]
                state.cursor = (int(last.version), last.type, last.entity_id)
                has_more = True
            else:
                states[key] = ScopeState(version=version)
            patches.extend(entry_patch(row) for row in found)
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
    result: dict[str, Any] = {
        "cookie": cookies.encode(states, settings.signing_key),
        "hasMore": has_more,
        "lastMutationIds": lmids,
        "patches": patches,
        "resetScopes": sorted(resets),
    }
    if sums is not None:
        result["checksums"] = sums
    return result
