"""Concurrency: the same batch pushed twice at once applies once; many devices at once."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from models import Note, SyncMutationResult, TopicProgress
from tests.support import make_course, sign_up
from tests.test_sync_support import mutation, push_body, raw, sync_tables

pytestmark = pytest.mark.usefixtures("sync_tables")
_ = sync_tables


async def test_the_same_batch_pushed_twice_at_once_applies_once(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id)
    body = push_body(
        "twice",
        *[
            mutation(
                "c",
                n + 1,
                "createNote",
                {
                    "noteId": str(uuid.uuid4()),
                    "topicId": str(tree.topic_ids[n % 3]),
                    "body": f"n{n}",
                },
            )
            for n in range(20)
        ],
    )
    first, second = await asyncio.gather(
        raw(client, user.token, "/sync/push", body), raw(client, user.token, "/sync/push", body)
    )
    statuses = [r["status"] for r in first.json()["results"]] + [
        r["status"] for r in second.json()["results"]
    ]
    assert statuses.count("APPLIED") == 20
    assert statuses.count("DUPLICATE") == 20
    assert await Note.filter(user_id=user.id).count() == 20
    assert await SyncMutationResult.all().count() == 20


async def test_many_devices_of_one_user_push_at_once(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    tree = await make_course(user.id)
    topics = [str(t) for t in tree.topic_ids]

    async def device(n: int) -> list[str]:
        body = push_body(
            f"dev{n}",
            mutation("c", 1, "completeTopic", {"topicId": topics[n % len(topics)]}),
            mutation("c", 2, "bookmarkTopic", {"topicId": topics[(n + 1) % len(topics)]}),
            mutation("c", 3, "renameCourse", {"courseId": str(tree.course_id), "title": f"t{n}"}),
        )
        response = await raw(client, user.token, "/sync/push", body)
        return [r["status"] for r in response.json()["results"]]

    results = await asyncio.gather(*(device(n) for n in range(10)))
    for statuses in results:
        assert statuses[:2] == ["APPLIED", "APPLIED"]
        assert statuses[2] == "APPLIED"
    assert await TopicProgress.filter(user_id=user.id).count() == len(topics)
