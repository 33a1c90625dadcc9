"""syncPoke: after a commit, tell every user whose scopes changed to pull (no data).

Published on the process broker (`subscriptions.broker.Broker.publish`), which carries it to
every web process through Redis in production. Channel: `sync:<userId>`; data: a JSON list of
`{"scope", "version"}`. Pub/sub is at-most-once: a client that missed a poke pulls when it
reconnects.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Protocol

from models import Course, CourseMember

log = logging.getLogger("coursegen.sync")


class Publisher(Protocol):
    async def publish(self, channel: str, data: str) -> None: ...


def channel(user_id: object) -> str:
    return f"sync:{user_id}"


async def poke(publisher: Publisher | None, changed: Iterable[tuple[str, int]]) -> None:
    latest: dict[str, int] = {}
    for scope, version in changed:
        latest[scope] = max(latest.get(scope, 0), version)
    if publisher is None or not latest:
        return
    try:
        by_user: dict[str, list[dict[str, object]]] = {}
        course_ids = [s.partition(":")[2] for s in latest if s.startswith("course:")]
        owners = await Course.filter(id__in=course_ids).values("id", "owner_id")
        members = await CourseMember.filter(course_id__in=course_ids).values("course_id", "user_id")
        readers: dict[str, set[str]] = {}
        for row in owners:
            readers.setdefault(f"course:{row['id']}", set()).add(str(row["owner_id"]))
        for row in members:
            readers.setdefault(f"course:{row['course_id']}", set()).add(str(row["user_id"]))
        for scope, version in sorted(latest.items()):
            users = (
                {scope.partition(":")[2]}
                if scope.startswith("user:")
                else readers.get(scope, set())
            )
            for user in users:
                by_user.setdefault(user, []).append({"scope": scope, "version": version})
        for user, items in by_user.items():
            await publisher.publish(channel(user), json.dumps(items))
    except Exception:
        log.warning("sync poke failed", exc_info=True)
