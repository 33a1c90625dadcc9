"""A deployment in miniature on loopback: HAProxy in front of N web processes, M worker
processes, PgBouncer in transaction mode in front of PostgreSQL (and, optionally, a streaming
replica behind the same pooler), and one Redis. Used by bench/scale_drill.py and
tests/test_scale_drill.py.

Every server listens on a free port and keeps its files in a temporary directory; `kill()`
sends SIGKILL to one process (no graceful shutdown: what a crashed machine does), `close()`
stops everything that is left. The database must exist and be migrated (the release step)
before `start()`; the topology only points the processes at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.servers import PrivateHaproxy, PrivatePgBouncer, PrivateRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-topology-secret-key-0123456789abcdef"


@dataclass
class Database:
    """Where PostgreSQL is (host, port) and which database the service uses."""

    host: str
    port: int
    name: str
    replica: tuple[str, int] | None = None  # a streaming replica of the same cluster


@dataclass
class Member:
    """One process of the deployment: a web process (with its HAProxy server name) or a worker."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    killed_at: float | None = None  # time.monotonic() of the SIGKILL

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Topology:
    database: Database
    web: int = 3
    workers: int = 2
    balance: str = "leastconn"
    pool_size: int = 20  # PgBouncer's server connections per database
    env: dict[str, str] = field(default_factory=dict)  # extra settings for every process
    secret_key: str = SECRET

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="coursegen-topology-"))
        self.redis = PrivateRedis()
        aliases = {}
        if self.database.replica:
            host, port = self.database.replica
            aliases[self.replica_alias] = (host, port, self.database.name)
        self.pooler = PrivatePgBouncer(
            self.database.host, self.database.port, pool_size=self.pool_size, aliases=aliases
        )
        self.webs: list[Member] = []
        self.workers_: list[Member] = []
        self.proxy: PrivateHaproxy | None = None

    @staticmethod
    def missing() -> list[str]:
        """The server binaries this machine lacks (Debian packages of the same names)."""
        found = {
            "haproxy": PrivateHaproxy.binary(),
            "pgbouncer": PrivatePgBouncer.binary(),
            "redis-server": shutil.which("redis-server"),
        }
        return [name for name, path in found.items() if path is None]

    @property
    def replica_alias(self) -> str:
        return f"{self.database.name}_replica"

    @property
    def url(self) -> str:
        """The load balancer: the one address clients use."""
        assert self.proxy is not None, "start() first"
        return self.proxy.url

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def process_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("COURSEGEN_", "LIVE_", "GENERATION_", "DATABASE_", "DB_"))
            and k not in {"REDIS_URL", "SECRET_KEY", "REDIS_NAMESPACE"}
        }
        env.update(
            PYTHONPATH=str(ROOT),
            DATABASE_URL=self.pooler.url(self.database.name),
            # Transaction pooling: no named prepared statements, timeouts via connect_query.
            DATABASE_POOLER="transaction",
            REDIS_URL=self.redis.url,
            SECRET_KEY=self.secret_key,
            COURSEGEN_ENV="production",
            COURSEGEN_DATA_DIR=str(self.root / "data"),
            COURSEGEN_AUTO_MIGRATE="false",
            COURSEGEN_SEED_DEMO="false",
        )
        if self.database.replica:
            # Read replicas are another engineer's work; a service that does not know the
            # setting yet ignores it (pydantic-settings ignores unknown variables).
            env["DATABASE_REPLICA_URLS"] = self.pooler.url(self.replica_alias)
        env.update(self.env)
        return env

    def _spawn(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            # Each in its own session: a SIGKILL of one never reaches the others, and Ctrl-C
            # on the drill does not reach them before close() does.
            return subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.process_env(),
                stdout=subprocess.DEVNULL,
                stderr=out,
                start_new_session=True,
            )

    def spawn_web(self, index: int) -> Member:
        port = free_port()
        command = [
            sys.executable,
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
            "--timeout-graceful-shutdown",
            "5",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--backlog",
            "4096",
            # HAProxy is on loopback: its X-Forwarded-For names the client (rate limits per IP).
            "--proxy-headers",
            "--forwarded-allow-ips",
            "127.0.0.1",
        ]
        log = self.root / f"web{index}.log"
        return Member(f"web{index}", self._spawn(command, log), log, port=port)

    def spawn_worker(self, index: int) -> Member:
        log = self.root / f"worker{index}.log"
        command = [sys.executable, "manage.py", "worker"]
        return Member(f"worker{index}", self._spawn(command, log), log)

    async def start(self) -> None:
        (self.root / "data").mkdir(exist_ok=True)
        self.redis.start()
        self.pooler.start()
        self.webs = [self.spawn_web(i) for i in range(self.web)]
        self.workers_ = [self.spawn_worker(i) for i in range(self.workers)]
        await asyncio.gather(*(self._ready(web) for web in self.webs))
        self.proxy = PrivateHaproxy(
            [(web.name, web.port or 0) for web in self.webs], balance=self.balance
        )
        self.proxy.start()
        await self.wait_states({web.name: "UP" for web in self.webs})
        for worker in self.workers_:
            if not worker.alive:
                raise RuntimeError(f"{worker.name} exited: {self.tail(worker)}")

    async def _ready(self, web: Member, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if not web.alive:
                    raise RuntimeError(f"{web.name} exited: {self.tail(web)}")
                with contextlib.suppress(httpx.TransportError):
                    ready = await client.get(f"http://127.0.0.1:{web.port}/health/ready")
                    if ready.status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{web.name} not ready: {self.tail(web)}")

    async def wait_states(self, wanted: dict[str, str], limit: float = 30) -> float:
        """Wait until HAProxy's health checks report these states; returns when (monotonic)."""
        assert self.proxy is not None
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            states = await asyncio.to_thread(self.proxy.states)
            if all(states.get(name) == state for name, state in wanted.items()):
                return time.monotonic()
            await asyncio.sleep(0.05)
        raise RuntimeError(f"haproxy states {states} never became {wanted}")

    def kill(self, member: Member) -> float:
        """SIGKILL: no drain, no goodbye to its clients; returns when (monotonic)."""
        member.killed_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            member.process.send_signal(signal.SIGKILL)
        member.process.wait()
        return member.killed_at

    def tail(self, member: Member, size: int = 3000) -> str:
        return member.log.read_text(errors="replace")[-size:] if member.log.exists() else ""

    def close(self) -> None:
        members = [*self.webs, *self.workers_]
        for member in members:
            if member.alive:
                member.process.terminate()
        for member in members:
            try:
                member.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait()
        if self.proxy is not None:
            self.proxy.close()
        self.pooler.close()
        self.redis.close()
        shutil.rmtree(self.root, ignore_errors=True)


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(roots: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named group of processes and all their
    descendants, from /proc (a process that has exited counts no more: sample often)."""
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parent[int(entry)] = int(fields[1])
            used[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, pids in roots.items():
        total, stack, seen = 0.0, list(pids), set()
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            total += used.get(pid, 0.0)
            stack.extend(children.get(pid, []))
        out[name] = total
    return out


def roles(topology: Topology, extra: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """The topology's processes by role, for tree_cpu (a killed member counts until killed)."""
    groups = {
        **{m.name: [m.process.pid] for m in [*topology.webs, *topology.workers_]},
        "haproxy": [topology.proxy.process.pid]
        if topology.proxy and topology.proxy.process
        else [],
        "pgbouncer": [topology.pooler.process.pid] if topology.pooler.process else [],
        "redis": [topology.redis.process.pid] if topology.redis.process else [],
    }
    groups.update(extra or {})
    return groups
