"""What the outage drills share with bench/outage_drills.py: a steady GraphQL load that records
how every request ended, and the check that no answer shows an internal detail."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

# Names and shapes that must never reach a client: tracebacks, file paths, SQL, driver and
# library names, Python reprs of exceptions.
_LEAKS = re.compile(
    r"Traceback|File \"|\.py\b|/work/|site-packages|asyncpg|tortoise|psycopg|sqlite3|redis\.|"
    r"\bSELECT\b|\bINSERT INTO\b|\bUPDATE \w+ SET\b|\bDELETE FROM\b|sqlstate|"
    r"ConnectionRefused|ConnectionError|OperationalError|IntegrityError|Exception\(|Error\(",
)


def find_leak(text: str) -> str | None:
    """The first internal detail found in a response body, or None."""
    found = _LEAKS.search(text)
    return found.group(0) if found else None


LOAD_QUERY = "query Load { me { id } courses(first: 5) { totalCount } }"


@dataclass
class Sample:
    started: float
    ended: float
    kind: str  # ok, unavailable, timeout, masked, transport, other
    status: int | None
    body: str


def classify(response: httpx.Response) -> str:
    """How a GraphQL answer ended, by what a client can see."""
    try:
        body: Any = response.json()
    except ValueError:
        return "other"
    errors = body.get("errors") if isinstance(body, dict) else None
    if response.status_code == 200 and not errors:
        return "ok"
    codes = {(e.get("extensions") or {}).get("code") for e in errors or []}
    if (
        response.status_code == 503
        and codes == {"TEMPORARILY_UNAVAILABLE"}
        and response.headers.get("retry-after")
    ):
        return "unavailable"
    if response.status_code == 504:
        return "timeout"
    if any(str(e.get("message", "")).startswith("Unexpected error") for e in errors or []):
        return "masked"
    return "other"


@dataclass
class QueryLoad:
    """`concurrency` closed loops sending `query` with `token` until `stop()`."""

    base: str
    token: str
    query: str = LOAD_QUERY
    concurrency: int = 4
    client_timeout: float = 30.0
    pause: float = 0.01
    samples: list[Sample] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks)

    async def _loop(self) -> None:
        headers = {"authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.base, timeout=self.client_timeout) as client:
            while not self._stopping.is_set():
                started = time.monotonic()
                try:
                    response = await client.post(
                        "/graphql", json={"query": self.query}, headers=headers
                    )
                    sample = Sample(
                        started,
                        time.monotonic(),
                        classify(response),
                        response.status_code,
                        response.text,
                    )
                except httpx.TimeoutException as error:
                    sample = Sample(started, time.monotonic(), "timeout", None, repr(error))
                except httpx.TransportError as error:
                    sample = Sample(started, time.monotonic(), "transport", None, repr(error))
                self.samples.append(sample)
                await asyncio.sleep(self.pause)

    def kinds(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        return Counter(s.kind for s in self.samples if since <= s.started < until)

    def first_ok_after(self, moment: float) -> Sample | None:
        return next(
            (
                s
                for s in sorted(self.samples, key=lambda s: s.ended)
                if s.kind == "ok" and s.started >= moment
            ),
            None,
        )

    async def wait_for_ok_after(self, moment: float, limit: float = 60.0) -> Sample:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            found = self.first_ok_after(moment)
            if found is not None:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"no successful request within {limit} s; saw {self.kinds(moment)}")
