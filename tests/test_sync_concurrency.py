"""Concurrency: the same batch pushed twice at once applies once; many devices at once."""

from __future__ import annotations

import asyncio
import logging
import uuid

import httpx
import pytest

from models import Note, SyncMutationResult, TopicProgress
from tests.conftest import POSTGRES_URL
from tests.support import Tree, make_course, sign_up
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


@pytest.mark.skipif(not POSTGRES_URL, reason="row locks and deadlocks: PostgreSQL")
async def test_batches_that_deadlock_are_run_again_from_the_last_commit(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # Two devices' batches lock two courses in opposite orders; PostgreSQL aborts one of the
    # two transactions, and that whole batch runs again (nothing of it had been committed).
    user = await sign_up(client)
    first, second = await make_course(user.id), await make_course(user.id)

    def crossing(group: str, a: Tree, b: Tree) -> dict[str, object]:
        ops = [mutation("c", 1, "renameCourse", {"courseId": str(a.course_id), "title": group})]
        ops += [
            mutation("c", n + 2, "renameTopic", {"topicId": str(t), "title": f"{group} {n}"})
            for n, t in enumerate(a.topic_ids)
        ]
        ops.append(
            mutation(
                "c", len(ops) + 1, "renameCourse", {"courseId": str(b.course_id), "title": group}
            )
        )
        return push_body(group, *ops)

    caplog.set_level(logging.INFO, logger="coursegen.sync")
    for attempt in range(10):
        a, b = f"a{attempt}", f"b{attempt}"
        answers = await asyncio.gather(
            raw(client, user.token, "/sync/push", crossing(a, first, second)),
            raw(client, user.token, "/sync/push", crossing(b, second, first)),
        )
        for answer in answers:
            assert {r["status"] for r in answer.json()["results"]} == {"APPLIED"}
        for group in (a, b):
            stored = await SyncMutationResult.filter(client__group_id=group).count()
            assert stored == len(first.topic_ids) + 2
        if "the batch runs again" in caplog.text:
            break
    else:
        pytest.fail("the crossing batches never deadlocked")
    assert "DeadlockDetected" in caplog.text or "OperationalError" in caplog.text
