"""Fan-out of live progress from one web process to many subscribers (SSE and WebSocket).

    PYTHONPATH=. .venv/bin/python -m bench.fanout --steps 1000,2500,5000,10000 --events 15

For each step N it starts, on loopback only and with nothing shared with other work:
- a private `redis-server` (no persistence) and a fresh database (SQLite in a temporary
  folder, or a new database on `--database-url` PostgreSQL), holding one user and one
  running job;
- ONE web process (`uvicorn app:create_app --factory`, production-like: uvloop, httptools,
  no access log) with REDIS_URL, so events come through Redis Streams and the broker's single
  pub/sub connection exactly as in production;
- load-generator processes (bench/fanout_client.py) opening N subscribers to that job: N/2
  plain SSE streams and N/2 GraphQL subscriptions over graphql-transport-ws (see `--ws-share`),
  each on its own TCP connection, arriving at `--connect-rate` connections a second.

A warm-up event is appended first: a subscriber that receives it follows live. The bench then
reads the web process's RSS, publishes `--events` events `--interval` seconds apart with
`RedisProgressLog.append` (as a worker does), and every subscriber records receipt time minus
the event's `at` (set at publish; same clock). Reported per step: subscribers that followed,
receipts (of N x events), fan-out latency p50/p90/p99/max, RSS growth per connection, and the
web process's CPU time. Degradation: the first step whose p99 exceeds `--slo` seconds or that
loses subscribers or receipts.

Everything stops by itself: each step has a deadline, and `--budget` bounds the whole run.
The machine has 2 cores shared by the server and the clients: read the figures as a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-key-that-is-long-enough-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class Fixture:
    database_url: str
    job_id: uuid.UUID
    course_id: uuid.UUID
    token: str


async def _prepare(database_url: str) -> Fixture:
    """Migrate a fresh database; one user, one running job, a long-lived access token."""
    from models import AuthSession, Course, CourseStatus, GenerationJob, JobStatus, User, db
    from services import tokens
    from settings import Environment, Settings

    settings = Settings(
        DATABASE_URL=database_url, SECRET_KEY=SECRET, COURSEGEN_ENV=Environment.TEST
    )
    await db.apply_migrations(settings)
    await db.connect(settings)
    try:
        user = await User.create(
            email=f"bench-{uuid.uuid4().hex[:8]}@example.com",
            password_hash="x",
            display_name="Bench",
        )
        session = await AuthSession.create(user_id=user.id)
        course = await Course.create(
            owner_id=user.id, title="Fan-out", status=CourseStatus.GENERATING
        )
        job = await GenerationJob.create(
            course_id=course.id, requester_id=user.id, status=JobStatus.RUNNING
        )
        token = tokens.issue_access_token(
            key=settings.signing_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            user_id=user.id,
            session_id=session.id,
            ttl_seconds=3 * 3600,
        )
    finally:
        await db.close()
    return Fixture(database_url, job.id, course.id, token)


class Redis:
    def __init__(self) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxclients",
                "1000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def _start_web(
    fixture: Fixture, redis_url: str, port: int, folder: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSEGEN_", "LIVE_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=fixture.database_url,
        REDIS_URL=redis_url,
        SECRET_KEY=SECRET,
        COURSEGEN_ENV="test",
        COURSEGEN_DATA_DIR=str(folder),
        COURSEGEN_AUTO_MIGRATE="false",
        COURSEGEN_SEED_DEMO="false",
        LIVE_MAX_CONNECTIONS_PER_USER="100000",
        LIVE_SSE_MAX_LIFETIME_SECONDS="36000",
        LIVE_SEND_QUEUE_SIZE="1024",
        LIVE_LOG_POLL_SECONDS="30",
        LIVE_SESSION_CHECK_SECONDS="3600",
        DB_POOL_MAX="20",
    )
    profile = os.environ.get("FANOUT_PROFILE")  # a path: run the web process under cProfile
    return subprocess.Popen(
        [
            sys.executable,
            *(["-m", "cProfile", "-o", profile] if profile else []),
            "-m",
            "uvicorn",
            "app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            "8192",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--timeout-graceful-shutdown",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode()[-2000:] if process.stderr else "")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status = await reader.readline()
            writer.close()
            if b" 200 " in status:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("web process not ready")


async def _client(config: dict[str, Any]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.fanout_client",
        json.dumps(config),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 28,  # the latencies come as one JSON line
    )


async def _line(process: asyncio.subprocess.Process, limit: float) -> dict[str, Any]:
    assert process.stdout is not None
    raw = await asyncio.wait_for(process.stdout.readline(), timeout=limit)
    if not raw:
        raise RuntimeError("load generator ended early")
    result: dict[str, Any] = json.loads(raw)
    return result


def _merged(counts: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for reason, n in count.items():
            merged[reason] = merged.get(reason, 0) + n
    return merged


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _database(args: argparse.Namespace, folder: Path, total: int) -> tuple[str, str | None]:
    """A fresh database for one step: SQLite in `folder`, or a new PostgreSQL database."""
    if not args.database_url:
        return f"sqlite://{folder / f'bench-{total}.sqlite3'}", None
    import asyncpg

    name = f"coursegen_fanout_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.database_url.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = args.database_url.rsplit("/", 1)[0]
    return f"{base}/{name}", name


async def _drop_database(args: argparse.Namespace, name: str | None) -> None:
    if name is None:
        return
    import asyncpg

    admin = await asyncpg.connect(args.database_url.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def run_step(args: argparse.Namespace, total: int, folder: Path) -> dict[str, Any]:
    url, created = await _database(args, folder, total)
    try:
        return await _run_step(args, total, folder, url)
    finally:
        await _drop_database(args, created)


async def _run_step(
    args: argparse.Namespace, total: int, folder: Path, database_url: str
) -> dict[str, Any]:
    from redis_connection import connect_redis
    from subscriptions.redis_progress_log import RedisProgressLog

    redis = Redis()
    fixture = await _prepare(database_url)
    port = _free_port()
    web = _start_web(fixture, redis.url, port, folder)
    publisher = connect_redis(redis.url)
    log = RedisProgressLog(publisher)
    clients: list[asyncio.subprocess.Process] = []
    try:
        await _wait_ready(port, web)
        await log.append(fixture.job_id, "started", progress=0.0, course_id=fixture.course_id)
        base_rss = _rss_kb(web.pid)
        ws_total = round(total * args.ws_share)
        plan = [("ws", ws_total), ("sse", total - ws_total)]
        for transport, count in plan:
            per = max(1, args.clients_per_transport)
            for part in range(per):
                share = count // per + (1 if part < count % per else 0)
                if share == 0:
                    continue
                clients.append(
                    await _client(
                        {
                            "transport": transport,
                            "port": port,
                            "path": f"/events/jobs/{fixture.job_id}",
                            "jobId": str(fixture.job_id),
                            "token": fixture.token,
                            "count": share,
                            "expect": args.events,
                            "connect_timeout": args.connect_timeout,
                            "rate": args.connect_rate / (2 * max(1, args.clients_per_transport)),
                            "deadline": args.events * args.interval + args.drain,
                        }
                    )
                )
        connect_started = time.monotonic()
        ready = [await _line(c, args.connect_timeout + 30) for c in clients]
        connect_seconds = time.monotonic() - connect_started
        subscribed = sum(r["subscribed"] for r in ready)
        await asyncio.sleep(1.0)  # let the server settle (GC, idle tasks)
        rss = _rss_kb(web.pid)
        cpu_before = _cpu_seconds(web.pid)
        for index in range(args.events):
            await log.append(
                fixture.job_id,
                "topic_done",
                progress=(index + 1) / args.events,
                course_id=fixture.course_id,
                message=f"{index + 1} of {args.events}",
            )
            await asyncio.sleep(args.interval)
        results = [await _line(c, args.events * args.interval + args.drain + 30) for c in clients]
        cpu = _cpu_seconds(web.pid) - cpu_before
    finally:
        for process in clients:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()
        await publisher.aclose()
        # SIGINT lets a profiled web process write its profile (uvicorn re-raises the signal).
        web.send_signal(signal.SIGINT if os.environ.get("FANOUT_PROFILE") else signal.SIGTERM)
        try:
            web.wait(timeout=60 if os.environ.get("FANOUT_PROFILE") else 15)
        except subprocess.TimeoutExpired:
            web.kill()
        if web.stderr is not None:
            web.stderr.close()
        redis.stop()
    latencies = [x for r in results for x in r["latencies"]]
    expected = subscribed * args.events
    return {
        "subscribers": total,
        "ws": ws_total,
        "sse": total - ws_total,
        "followed": subscribed,
        "connect_seconds": round(connect_seconds, 1),
        "receipts": len(latencies),
        "expected_receipts": expected,
        "dropped_connections": sum(r["closed"] for r in results),
        "drop_reasons": _merged([r.get("reasons", {}) for r in results]),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 1),
        "p90_ms": round(_percentile(latencies, 0.90) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
        "rss_base_mb": round(base_rss / 1024, 1),
        "rss_mb": round(rss / 1024, 1),
        "kb_per_connection": round((rss - base_rss) / max(subscribed, 1), 1),
        "web_cpu_seconds": round(cpu, 1),
        "events": args.events,
        "interval_s": args.interval,
    }


def _print(rows: list[dict[str, Any]], slo: float) -> None:
    print(
        "\n| subscribers (ws+sse) | followed | receipts | p50 ms | p90 ms | p99 ms | max ms "
        "| KB/conn | RSS MB | web CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    degraded = None
    for row in rows:
        print(
            f"| {row['subscribers']} ({row['ws']}+{row['sse']}) | {row['followed']} | "
            f"{row['receipts']}/{row['expected_receipts']} | {row['p50_ms']} | {row['p90_ms']} | "
            f"{row['p99_ms']} | {row['max_ms']} | {row['kb_per_connection']} | {row['rss_mb']} | "
            f"{row['web_cpu_seconds']} |"
        )
        lost = row["followed"] < row["subscribers"] or row["receipts"] < row["expected_receipts"]
        if degraded is None and (row["p99_ms"] > slo * 1000 or lost):
            degraded = row["subscribers"]
    print(
        f"\nDegradation (p99 > {slo} s, or a subscriber or receipt lost): "
        + (f"first at {degraded} subscribers" if degraded else "not reached")
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="1000,2500,5000,10000")
    parser.add_argument("--ws-share", type=float, default=0.5, help="share of WebSockets")
    parser.add_argument("--events", type=int, default=15)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--clients-per-transport", type=int, default=1)
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument(
        "--connect-rate", type=float, default=400.0, help="new connections per second, in all"
    )
    parser.add_argument("--drain", type=float, default=20.0, help="wait after the last event")
    parser.add_argument("--slo", type=float, default=1.0, help="p99 latency bound (seconds)")
    parser.add_argument("--budget", type=float, default=900.0, help="whole run, seconds")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server URL (a database is created per step and dropped); "
        "default: SQLite in a temporary folder",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fanout.json"))
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("needs redis-server on PATH")
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        for total in (int(step) for step in args.steps.split(",")):
            if time.monotonic() - started > args.budget:
                print(f"budget of {args.budget} s spent; stopping before {total}")
                break
            row = await run_step(args, total, Path(tmp))
            rows.append(row)
            print(json.dumps(row), flush=True)
    _print(rows, args.slo)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))  # noqa: ASYNC240 -- once, at the end
    print(f"\nwrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
