"""Closed-loop load on the dashboard query of a running server.

    PYTHONPATH=. .venv/bin/python -m bench.dashboard_load --url http://127.0.0.1:8000/graphql \
        --connections 1,10 --duration 20

Logs in as bench-user-0 (see bench.dataset), then, for each connection count N, runs N worker
coroutines that each send the dashboard query and wait for its answer, over an httpx client
limited to N connections: first a warm-up (not measured), then `--duration` seconds measured.
Prints requests/s, p50/p99 latency, response size and errors per level, then a Markdown table.

The client shares the machine with the server, so it is kept light: every response is checked
by status, size and two substring searches (no `"errors"` key, 20 `"cursor":` keys); only one
response in `--parse-every` is JSON-decoded and checked field by field. Its own CPU time is
reported so you can see what it took from the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import httpx

# The dashboard page as issue 7 describes it (~150-190 KB): the syllabus without the lesson
# bodies, which a course page loads. COURSEGEN_BENCH_WITH_CONTENT=1 adds `content` (~775 KB).
DASHBOARD = (
    "query Dashboard { courses(first: 20) { totalCount pageInfo { hasNextPage endCursor } "
    "edges { cursor node { id title description level status version updatedAt "
    "subjects { id title position topics { id title position estimatedMinutes "
    + ("content " if os.environ.get("COURSEGEN_BENCH_WITH_CONTENT") == "1" else "")
    + "progress { completed } } } } } } }"
)
LOG_IN = (
    "mutation LogIn($input: LogInInput!) { logIn(input: $input) { __typename "
    "... on AuthSuccess { accessToken } ... on UserError { code message } } }"
)
EMAIL = "bench-user-0@example.com"
PASSWORD = "bench-password-123"
PAGE = 20
CURSOR_KEY = b'"cursor":'  # one per edge; user text would carry it escaped, as \"cursor\":
ERRORS_KEY = b'"errors"'


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system, all threads) of a process, from /proc; None if unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None


def machine_busy() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / _TICK, total / _TICK


async def wait_for_quiet(threshold: float, max_wait: float) -> float:
    """Wait (at most max_wait s) until the machine is below threshold busy; returns the last
    busy fraction seen. Other jobs on a 2-core box skew every figure; this makes it visible."""
    deadline = time.monotonic() + max_wait
    while True:
        before = machine_busy()
        await asyncio.sleep(1.0)
        after = machine_busy()
        if before is None or after is None:
            return float("nan")
        busy = (after[0] - before[0]) / max(after[1] - before[1], 1e-9)
        if busy <= threshold or time.monotonic() >= deadline:
            return busy


@dataclass
class Level:
    connections: int
    duration: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    sizes: set[int] = field(default_factory=set)
    parsed: int = 0
    client_cpu: float = 0.0
    server_cpu: float | None = None  # seconds, when --server-pid is given
    machine_busy: float | None = None  # fraction of all cores busy during the window
    idle_before: float | None = None  # fraction of all cores busy just before the level

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return (self.ok + self.errors) / self.duration if self.duration else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index] * 1000


def check_full(body: bytes, expect_total: int | None) -> str | None:
    """The sampled, thorough check: the whole tree is there."""
    data = json.loads(body)
    if data.get("errors"):
        return f"errors: {data['errors']!r:.300}"
    page = data["data"]["courses"]
    edges = page["edges"]
    if len(edges) != PAGE:
        return f"{len(edges)} edges"
    if expect_total is not None and page["totalCount"] != expect_total:
        return f"totalCount {page['totalCount']} != {expect_total}"
    for edge in edges:
        subjects = edge["node"]["subjects"]
        if not subjects or any(not s["topics"] for s in subjects):
            return f"course {edge['node']['id']} without subjects or topics"
    return None


async def log_in(url: str, email: str, password: str) -> str:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            url,
            json={"query": LOG_IN, "variables": {"input": {"email": email, "password": password}}},
        )
        response.raise_for_status()
        result = response.json()["data"]["logIn"]
        if result["__typename"] != "AuthSuccess":
            raise SystemExit(f"logIn failed: {result}")
        return str(result["accessToken"])


async def first_response(url: str, headers: dict[str, str]) -> tuple[bytes, int]:
    """One request checked in full; its totalCount is what every later one must say."""
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(url, content=payload(), headers=headers)
    if response.status_code != 200:
        raise SystemExit(f"dashboard query: HTTP {response.status_code}: {response.text[:500]}")
    problem = check_full(response.content, None)
    if problem:
        raise SystemExit(f"dashboard query: {problem}")
    return response.content, int(json.loads(response.content)["data"]["courses"]["totalCount"])


def payload() -> bytes:
    return json.dumps({"query": DASHBOARD, "operationName": "Dashboard"}).encode()


async def run_level(
    url: str,
    headers: dict[str, str],
    connections: int,
    duration: float,
    warmup: float,
    parse_every: int,
    expect_total: int,
    server_pid: int | None = None,
) -> Level:
    level = Level(connections)
    body_bytes = payload()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=60, headers=headers) as client:
        phase = {"measuring": False, "stop": False}
        counter = 0

        async def worker() -> None:
            nonlocal counter
            while not phase["stop"]:
                started = time.perf_counter()
                problem: str | None = None
                try:
                    response = await client.post(url, content=body_bytes)
                    body = response.content
                    if response.status_code != 200:
                        problem = f"HTTP {response.status_code}: {body[:200]!r}"
                    elif ERRORS_KEY in body:
                        problem = f"errors in body: {body[:300]!r}"
                    elif (edges := body.count(CURSOR_KEY)) != PAGE:
                        problem = f"{edges} edges"
                    else:
                        counter += 1
                        if parse_every and counter % parse_every == 0:
                            problem = check_full(body, expect_total)
                            level.parsed += 1
                except httpx.HTTPError as error:
                    problem = f"{type(error).__name__}: {error}"
                elapsed = time.perf_counter() - started
                if not phase["measuring"] or phase["stop"]:
                    continue
                if problem is None:
                    level.latencies.append(elapsed)
                    level.sizes.add(len(body))
                else:
                    level.errors += 1
                    if len(level.error_samples) < 3:
                        level.error_samples.append(problem)

        tasks = [asyncio.create_task(worker()) for _ in range(connections)]
        await asyncio.sleep(warmup)
        cpu0, t0 = time.process_time(), time.perf_counter()
        server0, machine0 = process_cpu(server_pid), machine_busy()
        phase["measuring"] = True
        await asyncio.sleep(duration)
        phase["stop"] = True
        level.duration = time.perf_counter() - t0
        level.client_cpu = time.process_time() - cpu0
        server1, machine1 = process_cpu(server_pid), machine_busy()
        if server0 is not None and server1 is not None:
            level.server_cpu = server1 - server0
        if machine0 and machine1:
            level.machine_busy = (machine1[0] - machine0[0]) / max(machine1[1] - machine0[1], 1e-9)
        # Requests still in flight finish but are not counted (they ended after the window).
        await asyncio.gather(*tasks)
    return level


def describe(level: Level) -> str:
    sizes = sorted(level.sizes)
    size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}" if sizes else "-"
    text = (
        f"{level.connections:>3} conn: {level.rps:8.1f} req/s  p50 {level.percentile(50):8.1f} ms  "
        f"p99 {level.percentile(99):8.1f} ms  {level.ok} ok / {level.errors} errors in "
        f"{level.duration:.1f}s  size {size} B  client CPU {level.client_cpu / level.duration:.0%} "
        f"of one core  ({level.parsed} responses fully parsed)"
    )
    if level.server_cpu is not None and level.ok:
        text += (
            f"\n          server process CPU {level.server_cpu / level.duration:.0%} of one core, "
            f"{level.server_cpu / level.ok * 1000:.1f} ms CPU per request"
        )
    if level.machine_busy is not None:
        cores = os.cpu_count() or 1
        text += (
            f"\n          machine {level.machine_busy * cores:.2f} of {cores} cores busy "
            "during the window"
        )
        if level.server_cpu is not None:
            others = (
                level.machine_busy * cores - (level.server_cpu + level.client_cpu) / level.duration
            )
            text += f" ({others:.2f} cores: PostgreSQL, kernel and any other process)"
    if level.idle_before is not None:
        text += f"; {level.idle_before:.0%} busy just before the level"
    for sample in level.error_samples:
        text += f"\n      error: {sample}"
    return text


def table(levels: list[Level]) -> str:
    cores = os.cpu_count() or 1
    rows = [
        "| connections | req/s | p50 ms | p99 ms | mean ms | requests | errors | response bytes "
        "| server CPU ms/req | machine busy (cores) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in levels:
        sizes = sorted(level.sizes)
        size = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}" if sizes else "-"
        mean = statistics.fmean(level.latencies) * 1000 if level.latencies else float("nan")
        server = (
            f"{level.server_cpu / level.ok * 1000:.1f}"
            if level.server_cpu is not None and level.ok
            else "-"
        )
        machine = (
            f"{level.machine_busy * cores:.2f} of {cores}"
            if level.machine_busy is not None
            else "-"
        )
        rows.append(
            f"| {level.connections} | {level.rps:.1f} | {level.percentile(50):.1f} | "
            f"{level.percentile(99):.1f} | {mean:.1f} | {level.ok} | {level.errors} | {size} "
            f"| {server} | {machine} |"
        )
    return "\n".join(rows)


async def main_async(args: argparse.Namespace) -> int:
    levels_wanted = [int(n) for n in args.connections.split(",") if n.strip()]
    token = await log_in(args.url, args.email, args.password)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    sample, total = await first_response(args.url, headers)
    print(
        f"dashboard query OK: {len(sample)} bytes, totalCount {total}; "
        f"{args.warmup:.0f}s warm-up then {args.duration:.0f}s per level; "
        f"client: httpx, closed loop, every response checked by status/size/substring, "
        f"1 in {args.parse_every} JSON-parsed; the client runs on the same machine "
        f"({os.cpu_count()} cores)",
        flush=True,
    )
    levels = []
    for connections in levels_wanted:
        busy_before = None
        if args.quiet_wait > 0:
            busy_before = await wait_for_quiet(args.quiet_threshold, args.quiet_wait)
        level = await run_level(
            args.url,
            headers,
            connections,
            args.duration,
            args.warmup,
            args.parse_every,
            total,
            args.server_pid,
        )
        level.idle_before = busy_before
        levels.append(level)
        print(describe(level), flush=True)
    print()
    print(table(levels))
    return 1 if any(level.errors for level in levels) else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dashboard_load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000/graphql")
    parser.add_argument(
        "--connections", default="1", help="connection counts, comma-separated (e.g. 1,10)"
    )
    parser.add_argument("--duration", type=float, default=20, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds per level")
    parser.add_argument(
        "--parse-every",
        type=int,
        default=20,
        help="JSON-decode and fully check one response in N (0: never)",
    )
    parser.add_argument(
        "--server-pid",
        type=int,
        default=None,
        help="the server's process id: report its CPU time per request (from /proc)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each level, wait up to this long for the machine to be nearly idle",
    )
    parser.add_argument(
        "--quiet-threshold",
        type=float,
        default=0.15,
        help="'nearly idle' for --quiet-wait: at most this fraction of all cores busy",
    )
    parser.add_argument("--email", default=EMAIL)
    parser.add_argument("--password", default=PASSWORD)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
