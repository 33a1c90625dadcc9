"""A reference sync client: a local SQLite replica, a durable mutation queue, optimistic
application, and the push/pull loop with rebase on the server's canonical state.

It is what the mobile app does, in ~200 lines; the tests use it to simulate devices.

- `mutate(name, args)` appends to the queue (durably) and the change shows at once in `view()`.
- `push()` sends pending mutations; `pull()` walks pages until `hasMore` is false, applies the
  patches, and drops from the queue what the last page's `lastMutationIds` confirms.
- `view()` = the server's rows as last pulled + the pending mutations replayed on top of them
  (a rebase: a rejected or superseded mutation simply disappears once confirmed).
- `poked()` is what to call on a `syncPoke`: it pulls (coalescing pokes that arrive meanwhile).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

Transport = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
Key = tuple[str, str]  # (type, id)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (scope TEXT, type TEXT, id TEXT, version INTEGER, data TEXT,
                                 PRIMARY KEY (scope, type, id));
CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY, name TEXT, args TEXT, hlc TEXT,
                                  base_version INTEGER);
"""


class SyncReplica:
    def __init__(
        self,
        transport: Transport,
        path: str = ":memory:",
        client_group_id: str | None = None,
        client_id: str | None = None,
        clock_offset_ms: int = 0,
    ) -> None:
        self.transport = transport
        self.db = sqlite3.connect(path)
        self.db.executescript(_SCHEMA)
        self.clock_offset_ms = clock_offset_ms
        self._poked = self._pulling = False
        self.group = self._meta("group") or self._set("group", client_group_id or uuid.uuid4().hex)
        self.client = self._meta("client") or self._set("client", client_id or uuid.uuid4().hex)
        self.db.commit()

    # --- local state -----------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set(self, key: str, value: str) -> str:
        self.db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))
        return value

    def _tick(self) -> str:
        now = int(time.time() * 1000) + self.clock_offset_ms
        wall, counter = (int(x) for x in (self._meta("hlc") or "0-0").split("-"))
        wall, counter = (now, 0) if now > wall else (wall, counter + 1)
        self._set("hlc", f"{wall}-{counter}")
        return f"{wall}-{counter}-{self.client}"

    def mutate(self, name: str, args: dict[str, Any], base_version: int | None = None) -> int:
        """Queue a mutation (durably); it shows in `view()` at once."""
        next_id = int(self._meta("next") or "1")
        self._set("next", str(next_id + 1))
        self.db.execute(
            "INSERT INTO queue (id, name, args, hlc, base_version) VALUES (?, ?, ?, ?, ?)",
            (next_id, name, json.dumps(args), self._tick(), base_version),
        )
        self.db.commit()
        return next_id

    def pending(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT id, name, args, hlc, base_version FROM queue ORDER BY id")
        return [
            {
                "clientId": self.client,
                "id": mid,
                "name": name,
                "args": json.loads(args),
                "hlc": hlc,
                "baseVersion": base,
            }
            for mid, name, args, hlc, base in rows
        ]

    def server_rows(self) -> dict[Key, dict[str, Any]]:
        rows = self.db.execute("SELECT type, id, data FROM rows")
        return {(t, i): json.loads(d) for t, i, d in rows}

    def row_versions(self, scope: str) -> list[tuple[str, str, int]]:
        rows = self.db.execute("SELECT type, id, version FROM rows WHERE scope = ?", (scope,))
        return [(t, i, int(v)) for t, i, v in rows]

    def view(self) -> dict[Key, dict[str, Any]]:
        """Server state rebased with the pending mutations (optimistic)."""
        state = self.server_rows()
        for m in self.pending():
            _apply_locally(state, m["name"], m["args"])
        return state

    # --- the network ---------------------------------------------------------------------------

    async def push(self, batch: int | None = None) -> dict[str, Any] | None:
        mutations = self.pending()[:batch] if batch else self.pending()
        if not mutations:
            return None
        body = {"protocolVersion": 1, "clientGroupId": self.group, "mutations": mutations}
        return await self.transport("/sync/push", body)

    async def pull_page(self, limit: int | None = None, checksums: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "protocolVersion": 1,
            "clientGroupId": self.group,
            "cookie": self._meta("cookie"),
        }
        if limit:
            body["limit"] = limit
        if checksums:
            body["checksums"] = True
        page = await self.transport("/sync/pull", body)
        self.apply_page(page)
        return page

    def apply_page(self, page: dict[str, Any]) -> None:
        """Apply one page and its cookie in one local transaction."""
        with self.db:
            for scope in page["resetScopes"]:
                self.db.execute("DELETE FROM rows WHERE scope = ?", (scope,))
            for p in page["patches"]:
                if p["op"] == "DROP_SCOPE":
                    self.db.execute("DELETE FROM rows WHERE scope = ?", (p["scope"],))
                elif p["op"] == "DEL":
                    self.db.execute(
                        "DELETE FROM rows WHERE scope = ? AND type = ? AND id = ?",
                        (p["scope"], p["type"], p["id"]),
                    )
                else:
                    self.db.execute(
                        "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?)",
                        (p["scope"], p["type"], p["id"], p["version"], json.dumps(p["data"])),
                    )
            self._set("cookie", page["cookie"])
            if not page["hasMore"]:
                # Exact only on the last page: every scope is caught up to its snapshot.
                confirmed = int(page["lastMutationIds"].get(self.client, 0))
                self.db.execute("DELETE FROM queue WHERE id <= ?", (confirmed,))

    async def pull(
        self, limit: int | None = None, max_pages: int = 10_000, checksums: bool = False
    ) -> int:
        """Pull until `hasMore` is false; returns the number of pages. With `checksums`, the
        last page's checksums are compared with the replica; on drift the replica starts over
        (rows and cookie dropped, the queue kept) and pulls everything again."""
        for pages in range(1, max_pages + 1):
            page = await self.pull_page(limit, checksums)
            if page["hasMore"]:
                continue
            if checksums and self.drifted(page.get("checksums") or {}):
                with self.db:
                    self.db.execute("DELETE FROM rows")
                    self.db.execute("DELETE FROM meta WHERE k = 'cookie'")
                return pages + await self.pull(limit, max_pages)
            return pages
        raise RuntimeError("pull did not end")

    async def poked(self) -> None:
        """A syncPoke (or a resync) arrived: pull. Pokes that arrive while this pulls cost one
        more pull in all, not one each (they carry no data)."""
        self._poked = True
        if self._pulling:
            return
        self._pulling = True
        try:
            while self._poked:
                self._poked = False
                await self.pull()
        finally:
            self._pulling = False

    def drifted(self, checksums: dict[str, str]) -> list[str]:
        """The scopes whose rows here differ from the server's (by the last page's checksums)."""
        return sorted(
            scope
            for scope, expected in checksums.items()
            if checksum(self.row_versions(scope)) != expected
        )

    async def sync(self, batch: int | None = None, limit: int | None = None) -> None:
        while self.pending():
            before = len(self.pending())
            response = await self.push(batch)
            await self.pull(limit)
            statuses = {r["status"] for r in (response or {}).get("results", [])}
            if "RETRY_LATER" in statuses or (len(self.pending()) >= before and batch is None):
                break
        await self.pull(limit)

    def close(self) -> None:
        self.db.close()


def checksum(rows: list[tuple[str, str, int]]) -> str:
    """A scope's checksum as the server computes it: sha256 over its rows' sorted
    `type:id:version` lines, the first 16 hex digits."""
    text = "\n".join(f"{t}:{i}:{v}" for t, i, v in sorted(rows))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _apply_locally(state: dict[Key, dict[str, Any]], name: str, args: dict[str, Any]) -> None:
    """The optimistic effect of a mutation (the server's rules decide the final state)."""
    if name in ("completeTopic", "uncompleteTopic"):
        done = name == "completeTopic"
        state[("progress", args["topicId"])] = {
            "id": args["topicId"],
            "topicId": args["topicId"],
            "completed": done,
            "score": args.get("score") if done else None,
        }
    elif name == "bookmarkTopic":
        state[("bookmark", args["topicId"])] = {"id": args["topicId"], "topicId": args["topicId"]}
    elif name == "unbookmarkTopic":
        state.pop(("bookmark", args["topicId"]), None)
    elif name in ("renameCourse", "updateCourseDetails"):
        row = state.get(("course", args["courseId"]))
        if row is not None:
            row.update({k: v for k, v in args.items() if k != "courseId"})
    elif name == "renameTopic":
        row = state.get(("topic", args["topicId"]))
        if row is not None:
            row["title"] = args["title"]
    elif name == "moveTopic":
        row = state.get(("topic", args["topicId"]))
        if row is not None:
            row["subjectId"] = args["subjectId"]
    elif name == "createNote":
        state[("note", args["noteId"])] = {
            "id": args["noteId"],
            "topicId": args["topicId"],
            "body": args["body"],
            "version": 1,
        }
    elif name == "saveNote":
        row = state.get(("note", args["noteId"]))
        if row is not None:
            # The server bumps the version when it applies the edit; so does the view, so the
            # next edit queued here is based on this one, not in conflict with it.
            row["body"] = args["body"]
            row["version"] = int(row.get("version", 1)) + 1
    elif name == "deleteNote":
        state.pop(("note", args["noteId"]), None)
    elif name == "createCourse":
        state[("course", args["courseId"])] = {"id": args["courseId"], **args}
    elif name == "deleteCourse":
        state.pop(("course", args["courseId"]), None)
