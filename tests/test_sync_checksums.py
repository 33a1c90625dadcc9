"""Per-scope checksums: they match a replica that followed the server, and show a replica that
drifted (a row lost, a stale version, a row the server does not have); the reference client
then starts over and matches again."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services import scopes
from sync.client import SyncReplica, checksum
from sync.pull import checksum as server_checksum
from tests.support import make_course, sign_up
from tests.test_sync_support import device, sync_tables

pytestmark = pytest.mark.usefixtures("sync_tables")
_ = sync_tables


async def _busy_replica(client: httpx.AsyncClient) -> tuple[SyncReplica, list[str]]:
    """A device of a user with a course, notes, progress and a bookmark, fully synced."""
    user = await sign_up(client)
    tree = await make_course(user.id, subjects=2, topics=4)
    d, _ = device(client, user.token)
    topics = [str(t) for t in tree.topic_ids]
    for n, topic in enumerate(topics[:5]):
        d.mutate("createNote", {"noteId": str(uuid.uuid4()), "topicId": topic, "body": f"n{n}"})
    d.mutate("completeTopic", {"topicId": topics[0], "score": 90})
    d.mutate("bookmarkTopic", {"topicId": topics[1]})
    d.mutate("renameCourse", {"courseId": str(tree.course_id), "title": "Checked"})
    await d.sync(batch=3, limit=4)
    assert d.pending() == []
    return d, [scopes.user_scope(user.id), scopes.course_scope(tree.course_id)]


async def test_checksums_match_a_replica_that_followed_the_server(
    client: httpx.AsyncClient,
) -> None:
    d, scope_keys = await _busy_replica(client)
    # Only the last page carries checksums.
    d.db.execute("DELETE FROM meta WHERE k = 'cookie'")
    d.db.execute("DELETE FROM rows")
    first = await d.pull_page(limit=3, checksums=True)
    assert first["hasMore"] and "checksums" not in first
    while True:
        page = await d.pull_page(limit=3, checksums=True)
        if not page["hasMore"]:
            break
    assert sorted(page["checksums"]) == sorted(scope_keys)
    assert d.drifted(page["checksums"]) == []
    for scope in scope_keys:
        assert page["checksums"][scope] == checksum(d.row_versions(scope))
    # The client's formula is the server's.
    rows = [("note", "a", 3), ("course", "b", 1)]
    assert checksum(rows) == server_checksum(rows)


@pytest.mark.parametrize("drift", ["lost row", "stale version", "phantom row"])
async def test_checksums_show_a_divergent_replica_and_it_recovers(
    client: httpx.AsyncClient, drift: str
) -> None:
    d, (user_scope, course_scope) = await _busy_replica(client)
    if drift == "lost row":
        d.db.execute("DELETE FROM rows WHERE scope = ? AND type = 'note'", (user_scope,))
        damaged = user_scope
    elif drift == "stale version":
        d.db.execute("UPDATE rows SET version = version - 1 WHERE scope = ?", (course_scope,))
        damaged = course_scope
    else:
        d.db.execute(
            "INSERT INTO rows VALUES (?, 'topic', ?, 1, '{}')", (course_scope, str(uuid.uuid4()))
        )
        damaged = course_scope
    d.db.commit()
    # Nothing changed on the server: a plain pull brings nothing and cannot see the damage.
    page = await d.pull_page()
    assert page["patches"] == []
    page = await d.pull_page(checksums=True)
    assert d.drifted(page["checksums"]) == [damaged]
    # The reference client starts over when checksums disagree, and then agrees.
    d.db.execute("DELETE FROM rows WHERE scope = ? AND type = 'note'", (user_scope,))
    d.db.commit()
    await d.pull(checksums=True)
    final = await d.pull_page(checksums=True)
    assert d.drifted(final["checksums"]) == []
