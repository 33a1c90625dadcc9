"""The many-processes scale drill: the service as deployed, on one machine, under every kind of
load at once, losing a web process and a worker midway.

    PYTHONPATH=. .venv/bin/python -m bench.scale_drill [--seconds 60] [--subscribers 1000]
        [--devices 50] [--generations 30] [--web 3] [--workers 2] [--replica]

It starts (bench/topology.py) a private PostgreSQL cluster (and with `--replica` a streaming
replica of it, passed to the web processes as DATABASE_REPLICA_URLS), PgBouncer in transaction
mode, a private Redis, `--web` web processes and `--workers` worker processes, and HAProxy in
front of the web processes. Then:

1. **Scale phase** (`--scale-seconds` per level, 0 skips it): the dashboard at 10 connections
   through HAProxy with 1, 2, … `--web` web processes in service (the others set to
   maintenance over HAProxy's runtime API); req/s per level.
2. **Drill** (`--seconds`): `--generations` course generations requested at once; `--subscribers`
   live subscribers to them (half SSE, half GraphQL over WebSocket, spread over the web
   processes by the balancer, in a separate load-generator process, bench/drill_subscribers.py);
   the dashboard at 10 connections; `--devices` sync devices pushing (bench/drill_devices.py).
   At `--kill-at` (default: midway) the web process serving the most connections and the
   worker holding the most jobs get SIGKILL. After the load the drill waits (at most `--drain`
   s) for every job and every subscriber to finish.
3. **Figures**: requests served and failed; events lost or duplicated (every subscriber must
   have seen seqs 1..N of its job, each once, ending with the terminal event); mutations lost
   or applied twice (drill_devices.verify); jobs finished; time to recover (HAProxy marking the
   dead process down, the last failed dashboard request, subscribers re-established, devices'
   longest outage, the dead worker's jobs resumed). Exit code 1 if anything was lost,
   duplicated or left unfinished.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg
import httpx
from redis.exceptions import ResponseError

from bench.dashboard_load import machine_busy
from bench.drill_devices import Device, verify
from bench.topology import ROOT, Topology, roles, tree_cpu
from models import AuthSession, GenerationJob, JobStatus, User
from redis_connection import connect_redis
from services import tokens
from tests.support import make_course

DASHBOARD = (
    "query Dashboard { courses(first: 20) { totalCount pageInfo { hasNextPage endCursor } "
    "edges { cursor node { id title description level status version updatedAt "
    "subjects { id title position topics { id title position estimatedMinutes "
    "progress { completed } } } } } } }"
)
GENERATE = (
    "mutation($input: GenerateCourseInput!) { generateCourse(input: $input) { __typename "
    "... on GenerateCourseSuccess { job { id } } ... on UserError { code message } } }"
)
FINISHED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


@dataclass
class Plan:
    seconds: float = 60.0
    subscribers: int = 1000
    devices: int = 50
    generations: int = 30
    dashboard_connections: int = 10
    kill_at: float | None = None  # seconds into the drill; None: midway
    batch: int = 5  # mutations per push
    push_pause: float = 0.2  # seconds between a device's pushes (jittered)
    subjects: int = 3
    topics: int = 4
    model_latency_ms: int = 6000  # the offline writer's latency per model call
    claim_idle_seconds: float = 10.0  # a dead worker's jobs are taken over after this
    drain: float = 120.0
    scale_seconds: float = 15.0  # per level; 0: no scale phase
    dashboard_courses: int = 50  # bench.dataset shape for the dashboard user
    dashboard_subjects: int = 8
    dashboard_topics: int = 6

    @property
    def kill_after(self) -> float:
        return self.kill_at if self.kill_at is not None else self.seconds / 2


def service_env(plan: Plan) -> dict[str, str]:
    """Settings every process gets: limits raised so one drill user is not refused for being
    a load test (the limiters still run and count), jobs slow enough to be followed."""
    return {
        "COST_RATE_USER": "1000000000/minute",
        "COST_RATE_IP": "1000000000/minute",
        "GENERATION_RATE_FREE": "100000/hour",
        "LIVE_MAX_CONNECTIONS_PER_USER": "100000",
        "LIVE_SSE_MAX_LIFETIME_SECONDS": "3600",
        "LIVE_SESSION_CHECK_SECONDS": "3600",
        "COURSEGEN_OFFLINE_LATENCY_MS": str(plan.model_latency_ms),
        # A worker can hold every job: the survivor of a kill can take all the dead one's.
        "GENERATION_WORKERS": str(max(2, plan.generations)),
        "GENERATION_CLAIM_IDLE_SECONDS": str(plan.claim_idle_seconds),
    }


@dataclass
class Fixture:
    dashboard_token: str
    dashboard_total: int
    generation_tokens: list[str]
    devices: list[Device]


async def _user(secret: str, label: str) -> tuple[uuid.UUID, str]:
    user = await User.create(
        email=f"drill-{label}-{uuid.uuid4().hex[:8]}@example.com",
        password_hash="x",  # never logs in: the token is issued here
        display_name=f"Drill {label}",
    )
    session = await AuthSession.create(user_id=user.id)
    token = tokens.issue_access_token(
        key=secret,
        issuer="coursegen",
        audience="coursegen-api",
        user_id=user.id,
        session_id=session.id,
        ttl_seconds=3 * 3600,
    )
    return user.id, token


async def seed(secret: str, plan: Plan) -> Fixture:
    """Users straight in the database (Tortoise must be connected to the drill's database)."""
    from bench.dataset import fill

    dashboard_id, dashboard_token = await _user(secret, "dashboard")
    counts = await fill(
        users=1,
        courses=plan.dashboard_courses,
        subjects=plan.dashboard_subjects,
        topics=plan.dashboard_topics,
        progress_every=3,
        batch_size=1000,
    )
    # fill() made its own user: hand its courses to the drill's dashboard user.
    from models import Course

    filled = await User.filter(email="bench-user-0@example.com").first()
    assert filled is not None
    await Course.filter(owner_id=filled.id).update(owner_id=dashboard_id)
    generation_tokens = [(await _user(secret, f"gen{n}"))[1] for n in range(plan.generations)]
    devices = []
    for n in range(plan.devices):
        user_id, token = await _user(secret, f"device{n}")
        tree = await make_course(user_id, subjects=2, topics=5)
        devices.append(Device(token, user_id, [str(t) for t in tree.topic_ids]))
    return Fixture(dashboard_token, counts["courses"], generation_tokens, devices)


@dataclass
class DashboardLog:
    ok: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    failed_at: list[float] = field(default_factory=list)  # monotonic end of each failure
    served_by: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


async def dashboard(
    base: str, token: str, connections: int, page: int, stop: asyncio.Event, log: DashboardLog
) -> None:
    """Closed-loop dashboard requests (each response checked: 200, no errors, `page` edges)."""
    body = json.dumps({"query": DASHBOARD, "operationName": "Dashboard"}).encode()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30, headers=headers) as c:

        async def loop() -> None:
            while not stop.is_set():
                started = time.monotonic()
                problem = None
                try:
                    response = await c.post("/graphql", content=body)
                    served = response.headers.get("x-coursegen-web", "?")
                    log.served_by[served] = log.served_by.get(served, 0) + 1
                    if response.status_code != 200:
                        problem = f"HTTP {response.status_code}"
                    elif b'"errors"' in response.content:
                        problem = "errors"
                    elif response.content.count(b'"cursor":') != page:
                        problem = "short page"
                except httpx.HTTPError as error:
                    problem = type(error).__name__
                if problem is None:
                    log.ok += 1
                    log.latencies.append(time.monotonic() - started)
                else:
                    log.failed += 1
                    log.failures[problem] = log.failures.get(problem, 0) + 1
                    log.failed_at.append(time.monotonic())
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(loop() for _ in range(connections)))


async def scale_phase(topology: Topology, fixture: Fixture, plan: Plan) -> list[dict[str, Any]]:
    """Dashboard req/s through HAProxy with 1, 2, … web processes in service."""
    assert topology.proxy is not None
    rows = []
    names = [web.name for web in topology.webs]
    page = min(20, fixture.dashboard_total)
    for count in range(1, len(names) + 1):
        for index, name in enumerate(names):
            await asyncio.to_thread(topology.proxy.set_enabled, name, index < count)
        wanted = {n: ("UP" if i < count else "MAINT") for i, n in enumerate(names)}
        await topology.wait_states(wanted)
        warm, stop = DashboardLog(), asyncio.Event()
        warming = asyncio.create_task(
            dashboard(topology.url, fixture.dashboard_token, 10, page, stop, warm)
        )
        await asyncio.sleep(3)
        stop.set()
        await warming
        log, stop = DashboardLog(), asyncio.Event()
        busy0, started = machine_busy(), time.monotonic()
        task = asyncio.create_task(
            dashboard(topology.url, fixture.dashboard_token, 10, page, stop, log)
        )
        await asyncio.sleep(plan.scale_seconds)
        stop.set()
        elapsed = time.monotonic() - started
        await task
        busy1 = machine_busy()
        busy = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1e-9) if busy0 and busy1 else None
        rows.append(
            {
                "web": count,
                "req_s": round(log.ok / elapsed, 1),
                "failed": log.failed,
                "p50_ms": round(statistics.median(log.latencies) * 1000, 1)
                if log.latencies
                else None,
                "machine_busy": round(busy, 2) if busy is not None else None,
                "served_by": log.served_by,
            }
        )
        print(f"scale: {json.dumps(rows[-1])}", flush=True)
    for name in names:
        await asyncio.to_thread(topology.proxy.set_enabled, name, True)
    await topology.wait_states(dict.fromkeys(names, "UP"))
    return rows


async def generate(base: str, tokens_: list[str], plan: Plan) -> list[str]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def one(token: str) -> str:
            variables = {
                "input": {
                    "topic": "Distributed systems",
                    "subjectCount": plan.subjects,
                    "topicsPerSubject": plan.topics,
                }
            }
            response = await client.post(
                "/graphql",
                json={"query": GENERATE, "variables": variables},
                headers={"authorization": f"Bearer {token}"},
            )
            result = response.json()["data"]["generateCourse"]
            if result["__typename"] != "GenerateCourseSuccess":
                raise RuntimeError(f"generateCourse: {result}")
            return str(result["job"]["id"])

        return list(await asyncio.gather(*(one(t) for t in tokens_)))


async def busiest_worker(topology: Topology) -> int:
    """The index of the worker holding the most jobs (pending entries of its consumer)."""
    client = connect_redis(topology.redis_url)
    held: dict[int, int] = {}
    try:
        async for key in client.scan_iter(match="*jobs:{tiers}:*"):
            with contextlib.suppress(ResponseError):  # a stream with no group yet
                for consumer in await client.xpending_range(key, "workers", "-", "+", 10_000):
                    raw = consumer["consumer"]  # host-pid-suffix
                    name = raw.decode() if isinstance(raw, bytes) else str(raw)
                    pid = int(name.split("-")[-2])
                    held[pid] = held.get(pid, 0) + 1
    finally:
        await client.aclose()
    pids = [w.process.pid for w in topology.workers_]
    return max(range(len(pids)), key=lambda i: held.get(pids[i], 0))


def busiest_web(topology: Topology) -> int:
    """The index of the web process with the most open connections through HAProxy."""
    assert topology.proxy is not None
    lines = topology.proxy.command("show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    current: dict[str, int] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "web" and row.get("svname", "").startswith("web"):
            current[row["svname"]] = int(row.get("scur") or 0)
    names = [w.name for w in topology.webs]
    return max(range(len(names)), key=lambda i: current.get(names[i], 0))


def subscriber_plan(jobs: list[str], tokens_: list[str], count: int) -> list[dict[str, Any]]:
    subs = []
    for n in range(count):
        job = n % len(jobs)
        subs.append(
            {
                "job": jobs[job],
                "token": tokens_[job],
                "transport": "sse" if n % 2 == 0 else "ws",
                "timeline": n < len(jobs),  # the first subscriber of each job keeps times
            }
        )
    return subs


async def start_subscribers(port: int, subs: list[dict[str, Any]], deadline: float) -> Any:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.drill_subscribers",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 28,
    )
    assert process.stdin is not None and process.stdout is not None
    config = {"port": port, "subscribers": subs, "deadline": deadline}
    process.stdin.write(json.dumps(config).encode() + b"\n")
    await process.stdin.drain()
    process.stdin.close()
    first = json.loads(await asyncio.wait_for(process.stdout.readline(), deadline + 30))
    return process, first["connected"]


def judge_subscribers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_job: dict[str, int] = {}
    for row in rows:
        if row["seqs"]:
            by_job[row["job"]] = max(by_job.get(row["job"], 0), max(row["seqs"]))
    lost = duplicated = unfinished = 0
    for row in rows:
        seen: set[int] = set()
        for seq in row["seqs"]:
            if seq in seen:
                duplicated += 1
            seen.add(seq)
        final = by_job.get(row["job"], 0)
        lost += len(set(range(1, final + 1)) - seen)
        if row["seqs"] != sorted(seen) or not row["done"]:
            unfinished += 0 if row["done"] else 1
    reconnect = [s for row in rows for s in row["reconnect_seconds"]]
    transports: dict[str, set[str]] = {}
    for row in rows:
        transports.setdefault(row["transport"], set()).update(row["served_by"])
    out_of_order = sum(1 for row in rows if row["seqs"] != sorted(set(row["seqs"])))
    return {
        "subscribers": len(rows),
        "events_received": sum(len(row["seqs"]) for row in rows),
        "events_lost": lost,
        "events_duplicated": duplicated,
        "out_of_order_subscribers": out_of_order,
        "unfinished_subscribers": unfinished,
        "reconnected": sum(1 for row in rows if row["reconnects"]),
        "reconnect_p50_s": round(statistics.median(reconnect), 3) if reconnect else None,
        "reconnect_max_s": max(reconnect) if reconnect else None,
        "served_by": {t: sorted(names) for t, names in transports.items()},
        "failures": _merged([row["failures"] for row in rows]),
    }


def _merged(counts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for count in counts:
        for key, n in count.items():
            out[key] = out.get(key, 0) + n
    return out


class CpuMeter:
    """CPU seconds per process group over the load window, sampled every second (a killed
    process keeps what it had used at its last sample)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    async def sample(self) -> None:
        now = await asyncio.to_thread(tree_cpu, self.groups)
        for name, value in now.items():
            self.first.setdefault(name, value)
            self.last[name] = max(self.last.get(name, 0.0), value)

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(1.0)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, float]:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.sample()
        return {n: round(self.last[n] - self.first[n], 1) for n in self.groups}


async def run_drill(
    topology: Topology,
    fixture: Fixture,
    plan: Plan,
    extra_cpu: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """The drill proper, on a started topology; returns the figures. `extra_cpu` names more
    processes whose CPU to report (the drill's PostgreSQL servers)."""
    assert topology.proxy is not None
    figures: dict[str, Any] = {"plan": asdict(plan)}
    jobs = await generate(topology.url, fixture.generation_tokens, plan)
    subs = subscriber_plan(jobs, fixture.generation_tokens, plan.subscribers)
    deadline = plan.seconds + plan.drain
    subscribers, connected = await start_subscribers(topology.proxy.port, subs, deadline)
    figures["subscribers_connected"] = connected
    groups = roles(topology, {**(extra_cpu or {}), "subscriber client": [subscribers.pid]})
    meter = CpuMeter(groups)
    await meter.sample()
    meter.start()
    client_cpu = time.process_time()
    started = time.monotonic()
    stop = asyncio.Event()
    board = DashboardLog()
    page = min(20, fixture.dashboard_total)
    loads = [
        asyncio.create_task(
            dashboard(
                topology.url,
                fixture.dashboard_token,
                plan.dashboard_connections,
                page,
                stop,
                board,
            )
        )
    ]
    give_up = started + plan.seconds + plan.drain
    loads += [
        asyncio.create_task(d.run(topology.url, plan.batch, stop, give_up, plan.push_pause))
        for d in fixture.devices
    ]
    await asyncio.sleep(plan.kill_after)
    web = topology.webs[busiest_web(topology)]
    worker = topology.workers_[await busiest_worker(topology)]
    await meter.sample()  # what the two had used, before they go
    kill_wall = time.time()
    killed = topology.kill(web)
    topology.kill(worker)
    down = await topology.wait_states({web.name: "DOWN"})
    figures["killed"] = {"web": web.name, "worker": worker.name, "at_s": round(killed - started, 1)}
    await asyncio.sleep(max(0.0, plan.seconds - (time.monotonic() - started)))
    stop.set()
    await asyncio.gather(*loads)
    load_seconds = time.monotonic() - started
    cpu = await meter.stop()
    cpu["drill process (dashboard + devices clients)"] = round(time.process_time() - client_cpu, 1)

    # Every job to its end, every subscriber to its terminal event.
    drain_until = time.monotonic() + plan.drain
    while time.monotonic() < drain_until:
        statuses = [j.status for j in await GenerationJob.filter(id__in=jobs)]
        if all(s in FINISHED for s in statuses):
            break
        await asyncio.sleep(0.5)
    assert subscribers.stdout is not None
    try:
        raw = await asyncio.wait_for(subscribers.stdout.readline(), plan.drain + 30)
    finally:
        if subscribers.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                subscribers.kill()
        await subscribers.wait()
    rows = json.loads(raw)["subscribers"]

    rows_jobs = await GenerationJob.filter(id__in=jobs)
    taken_over = [str(j.id) for j in rows_jobs if j.attempts > 1]
    resumed = []
    for row in rows:
        if row["job"] in taken_over and row["timeline"]:
            after = [t for _, t in row["timeline"] if t > kill_wall]
            if after:
                resumed.append(after[0] - kill_wall)
    verdict = await verify(fixture.devices)
    figures.update(
        {
            "load_seconds": round(load_seconds, 1),
            "cpu_seconds": cpu,
            "dashboard": {
                "served": board.ok,
                "failed": board.failed,
                "failures": board.failures,
                "req_s": round(board.ok / load_seconds, 1),
                "served_by": board.served_by,
            },
            "live": judge_subscribers(rows),
            "sync": {
                **asdict(verdict),
                "pushes": sum(d.pushes for d in fixture.devices),
                "retried_pushes": sum(d.retries for d in fixture.devices),
                "statuses": _merged([d.statuses for d in fixture.devices]),
                "failures": _merged([d.failures for d in fixture.devices]),
            },
            "jobs": {
                "requested": len(jobs),
                "succeeded": sum(1 for j in rows_jobs if j.status is JobStatus.SUCCEEDED),
                "failed": sum(1 for j in rows_jobs if j.status is JobStatus.FAILED),
                "unfinished": sum(1 for j in rows_jobs if j.status not in FINISHED),
                "taken_over": len(taken_over),
            },
            "recovery_s": {
                "haproxy_marked_down": round(down - killed, 2),
                "last_dashboard_failure": round(max(board.failed_at) - killed, 2)
                if board.failed_at
                else None,
                "subscribers_reestablished_max": judge_subscribers(rows)["reconnect_max_s"],
                "device_longest_outage": max(
                    (o for d in fixture.devices for o in d.outages), default=None
                ),
                "taken_over_jobs_next_event_max": round(max(resumed), 2) if resumed else None,
                "taken_over_jobs_next_event_all": sorted(round(r, 1) for r in resumed),
            },
        }
    )
    return figures


def clean(figures: dict[str, Any]) -> bool:
    live, sync, jobs = figures["live"], figures["sync"], figures["jobs"]
    return (
        live["events_lost"] == 0
        and live["events_duplicated"] == 0
        and live["unfinished_subscribers"] == 0
        and sync["lost"] == 0
        and sync["applied_twice"] == 0
        and sync["unacked"] == 0
        and not sync["problems"]
        and jobs["unfinished"] == 0
    )


def _postmaster(server: Any) -> int:
    with open(server.data / "postmaster.pid") as f:  # first line: the postmaster's pid
        return int(f.readline())


def _loadavg() -> str:
    with open("/proc/loadavg") as f:  # a few bytes from procfs: never blocks
        return f.read().strip()


async def main_async(args: argparse.Namespace) -> int:
    from models import db
    from settings import Environment, Settings
    from tests.servers import PrivatePrimary, PrivateReplica

    plan = Plan(
        seconds=args.seconds,
        subscribers=args.subscribers,
        devices=args.devices,
        generations=args.generations,
        kill_at=args.kill_at,
        model_latency_ms=args.model_latency_ms,
        claim_idle_seconds=args.claim_idle,
        drain=args.drain,
        scale_seconds=args.scale_seconds,
    )
    print(f"load average before: {_loadavg()}", flush=True)
    # A primary that streams to replicas either way; `--replica` adds one.
    primary = PrivatePrimary()
    replica: PrivateReplica | None = None
    topology: Topology | None = None
    try:
        primary.start()
        name = "coursegen_drill"
        admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{primary.port}/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        direct = f"postgres://postgres@127.0.0.1:{primary.port}/{name}"
        settings = Settings(
            DATABASE_URL=direct, COURSEGEN_ENV=Environment.TEST, SECRET_KEY="x" * 40
        )
        await db.apply_migrations(settings)
        await db.connect(settings)
        if args.replica:
            replica = PrivateReplica(primary)
            replica.start()
        from bench.topology import Database

        database = Database(
            "127.0.0.1", primary.port, name, ("127.0.0.1", replica.port) if replica else None
        )
        topology = Topology(database, web=args.web, workers=args.workers, env=service_env(plan))
        fixture = await seed(topology.secret_key, plan)
        await topology.start()
        print(
            f"topology up: haproxy {topology.url}, {args.web} web, {args.workers} workers"
            f"{', replica' if replica else ''}",
            flush=True,
        )
        scale = await scale_phase(topology, fixture, plan) if plan.scale_seconds else []
        print(f"load average before the drill: {_loadavg()}", flush=True)
        postgres = {"postgresql primary": [_postmaster(primary)]}
        if replica is not None:
            postgres["postgresql replica"] = [_postmaster(replica)]
        figures = await run_drill(topology, fixture, plan, postgres)
        figures["scale"] = scale
        figures["loadavg_after"] = _loadavg()
        print(json.dumps(figures, indent=2), flush=True)
        ok = clean(figures)
        print("CLEAN: nothing lost, duplicated or unfinished" if ok else "NOT CLEAN", flush=True)
        return 0 if ok else 1
    finally:
        if topology is not None:
            for member in [*topology.webs, *topology.workers_]:
                errors = [
                    line
                    for line in topology.tail(member, 20000).splitlines()
                    if "Traceback" in line or "ERROR" in line
                ]
                if errors:
                    print(f"{member.name}: {len(errors)} error lines; last: {errors[-1][:300]}")
            topology.close()
        with contextlib.suppress(Exception):
            await db.close()
        if replica is not None:
            replica.close()
        primary.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--generations", type=int, default=30)
    parser.add_argument("--web", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--replica", action="store_true", help="a streaming replica too")
    parser.add_argument("--kill-at", type=float, default=None, help="default: midway")
    parser.add_argument("--model-latency-ms", type=int, default=6000)
    parser.add_argument("--claim-idle", type=float, default=10.0)
    parser.add_argument("--drain", type=float, default=120.0)
    parser.add_argument("--scale-seconds", type=float, default=15.0)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
