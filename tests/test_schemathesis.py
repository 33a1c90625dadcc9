"""schemathesis against the GraphQL endpoint (issue 6): a bounded number of generated operations
per root field, with a fixed seed, signed in as a real user who has a course (and can name
another user's course). No 5xx, no unexpected GraphQL error, no internal detail in any body.
The long run (10,000+ requests) is bench/schemathesis_run.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import requests

from settings import Settings
from tests.graphql_fuzz import fuzz, problems
from tests.support import make_course, sign_up
from tests.test_live_support import free_port, spawn_web, stop, wait_ready

EXAMPLES_PER_FIELD = 12


async def test_schemathesis_finds_no_server_error_unexpected_error_or_leak(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    # A real server process: schemathesis calls it synchronously (from a thread here).
    web = spawn_web(settings, port, data_dir=tmp_path, log_file=tmp_path / "web.log")
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, web)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            user = await sign_up(client)
            other = await sign_up(client)
        mine = await make_course(user.id, subjects=2, topics=2)
        theirs = await make_course(other.id, subjects=1, topics=1)
        ids = [
            str(i)
            for tree in (mine, theirs)
            for i in (tree.course_id, *tree.subject_ids, *tree.topic_ids)
        ] + [str(user.id), str(other.id)]

        report = await asyncio.to_thread(fuzz, base, user.token, ids, examples=EXAMPLES_PER_FIELD)

        assert report.requests >= EXAMPLES_PER_FIELD * 20  # every root field was exercised
        assert not report.failures, "\n\n".join(report.failures[:10])
        assert web.poll() is None
    finally:
        stop(web)


def _answer(status: int, body: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()
    return response


def test_the_fuzz_checks_catch_what_they_promise() -> None:
    masked = '{"data": null, "errors": [{"message": "Unexpected error. It has been logged."}]}'
    assert problems(_answer(500, '{"errors": []}')) == ["HTTP 500"]
    assert problems(_answer(200, masked)) == ["unexpected error at None"]
    assert problems(_answer(200, '{"errors": [{"message": "x", "extensions": {"code": "OOPS"}}]}'))
    assert problems(_answer(200, '{"errors": [{"message": "Traceback (most recent call"}]}'))
    assert problems(_answer(200, '{"errors": [{"message": "relation \\"users\\": SELECT id"}]}'))
    assert problems(_answer(200, "<html>Internal Server Error</html>")) == ["not JSON"]
    # graphql-core's own wording, and our stable codes, are fine.
    coercion = '{"errors": [{"message": "Int cannot represent non-integer value: \\"a\\""}]}'
    assert problems(_answer(200, coercion)) == []
    limited = '{"errors": [{"message": "Too costly", "extensions": {"code": "QUERY_TOO_COSTLY"}}]}'
    assert problems(_answer(200, limited)) == []
