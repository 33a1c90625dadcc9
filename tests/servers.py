"""Private Redis and PostgreSQL servers that a test (or a bench) starts, stops and restarts.

The machine's shared servers (PostgreSQL on 5432, Redis on 6379) are used by other test runs at
the same time: outage drills never touch them. Each server here listens on a free loopback port,
keeps its data in a temporary directory, and is removed with it by `close()` (also after a
failed test: the fixtures call it in `finally`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server with nothing on disk (as deployed here, PITFALLS.md): a restart loses
    every stream, group and key, which is what the drills need."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
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
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            )
            if probe.stdout.strip() == b"PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    close = kill


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, fixed by Redis) is free and valid."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class PrivateRedisCluster:
    """Three masters (no replicas) joined by `redis-cli --cluster create`: enough for keys in
    different slots to live on different nodes, which is what cluster tests must prove."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="coursegen-cluster-"))
        self.ports = [_cluster_port() for _ in range(3)]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The service's REDIS_URL for this cluster (redis_connection.py): every node listed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports) + "/"

    def node_url(self, index: int) -> str:
        """A plain connection to one node (pub/sub, or a look at what that node holds)."""
        return f"redis://127.0.0.1:{self.ports[index]}/0"

    def kill_node(self, index: int) -> None:
        """The node dies (kill -9); with no replicas its slots stay uncovered."""
        process = self.processes[index]
        if process.poll() is None:
            process.kill()
            process.wait()

    def _cli(self, *args: str) -> bytes:
        return subprocess.run(["redis-cli", *args], capture_output=True, check=False).stdout

    def start(self) -> None:
        for port in self.ports:
            self.processes.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(self.root / f"nodes-{port}.conf"),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(self.root),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            self._wait(lambda p=port: self._cli("-p", str(p), "ping").strip() == b"PONG")
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        create = ["--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"]
        subprocess.run(
            ["redis-cli", *create],
            capture_output=True,
            check=True,
        )
        for port in self.ports:
            self._wait(
                lambda p=port: b"cluster_state:ok" in self._cli("-p", str(p), "cluster", "info")
            )

    @staticmethod
    def _wait(ready: object, seconds: float = 20) -> None:
        assert callable(ready)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError("redis cluster did not come up")

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _postgres_bin() -> Path | None:
    """The newest installed server's bin directory (Debian keeps them out of PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3])
    )
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb in a temporary directory, trust auth on
    loopback). As root the server runs as the `postgres` OS user, which PostgreSQL requires."""

    # Server options beyond the common ones (`-c name=value ...`).
    options = ""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bin = _postgres_bin()
        self.root: Path | None = None

    @classmethod
    def available(cls) -> bool:
        if _postgres_bin() is None:
            return False
        if os.geteuid() != 0:
            return True
        with contextlib.suppress(KeyError):
            import pwd

            pwd.getpwnam("postgres")
            return shutil.which("runuser") is not None
        return False

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        assert self.root is not None, "start() first"
        return self.root / "data"

    def _run(self, *args: str, timeout: float = 60) -> None:
        assert self.bin is not None, "no PostgreSQL server binaries here"
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)

    def start(self) -> None:
        """Creates the cluster on the first call; later calls start the stopped server."""
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="coursegen-pg-"))
            if os.geteuid() == 0:
                shutil.chown(self.root, "postgres", "postgres")
            self._create()
        self._ctl("start")

    def _create(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def _ctl(self, action: str, *extra: str) -> None:
        assert self.root is not None
        # Durability is not under test; fsync off keeps a restart fast on a busy machine.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c full_page_writes=off -c synchronous_commit=off {self.options}"
        )
        # The server's output goes to a file: on an inherited pipe, reading pg_ctl's output
        # would wait for the server to exit.
        log = str(self.root / "server.log")
        self._run(
            "pg_ctl",
            action,
            "-D",
            str(self.data),
            "-w",
            "-t",
            "60",
            "-l",
            log,
            "-o",
            options,
            *extra,
        )

    def stop(self) -> None:
        """A fast shutdown: open sessions are ended, as in a real restart."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def close(self) -> None:
        if self.root is None:
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


class PrivatePrimary(PrivatePostgres):
    """A private PostgreSQL that streaming replicas can follow: WAL for replicas, WAL senders,
    and replication connections from loopback allowed (trust)."""

    options = "-c wal_level=replica -c max_wal_senders=5"

    def _create(self) -> None:
        super()._create()
        hba = self.data / "pg_hba.conf"
        line = "host replication all 127.0.0.1/32 trust\n"
        if line not in hba.read_text():
            with hba.open("a") as file:
                file.write(line)


class PrivateReplica(PrivatePostgres):
    """A hot-standby streaming replica of `primary`, made by `pg_basebackup -R` (the base
    backup, plus standby.signal and primary_conninfo), on a port of its own. `pause_replay`
    and `resume_replay` (SQL on the replica) hold back or release what it shows."""

    options = "-c hot_standby=on"

    def __init__(self, primary: PrivatePrimary, port: int | None = None) -> None:
        super().__init__(port)
        self.primary = primary

    @classmethod
    def available(cls) -> bool:
        found = _postgres_bin()
        return super().available() and found is not None and (found / "pg_basebackup").exists()

    def _create(self) -> None:
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.data),
            "-R",  # write standby.signal and primary_conninfo: start as its replica
            "-X",
            "stream",
            "-c",
            "fast",  # an immediate checkpoint on the primary, not a spread one
            "--no-sync",
        )


class PrivatePgBouncer:
    """PgBouncer (Debian's package) in transaction pooling mode in front of a PostgreSQL server,
    on a free loopback port. The pool's server connections get the statement and idle
    timeouts from `connect_query`, the way a pooler passes them on (startup parameters it
    refuses). PgBouncer will not run as root: as root it runs as the `postgres` OS user."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        statement_timeout_ms: int = 5000,
        idle_timeout_ms: int = 10_000,
        pool_size: int = 4,
        aliases: dict[str, tuple[str, int, str]] | None = None,
    ) -> None:
        self.target = (host, port)
        # Extra pooled names (name -> host, port, database), e.g. a replica beside the primary.
        self.aliases = aliases or {}
        self.port = free_port()
        self.statement_timeout_ms = statement_timeout_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.pool_size = pool_size
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("pgbouncer") or (
            "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
        )

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgres://{user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        binary = self.binary()
        assert binary is not None, "pgbouncer is not installed"
        self.root = Path(tempfile.mkdtemp(prefix="coursegen-pgbouncer-"))
        (self.root / "users.txt").write_text('"postgres" ""\n')
        host, port = self.target
        connect_query = (
            f"SET statement_timeout = {self.statement_timeout_ms}; "
            f"SET idle_in_transaction_session_timeout = {self.idle_timeout_ms}"
        )
        aliases = "".join(
            f"{name} = host={h} port={p} dbname={d} connect_query='{connect_query}'\n"
            for name, (h, p, d) in self.aliases.items()
        )
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{aliases}"
            f"* = host={host} port={port} connect_query='{connect_query}'\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.root}\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\nmax_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
        )
        command = [binary, str(self.root / "pgbouncer.ini")]
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            for item in self.root.iterdir():
                shutil.chown(item, "postgres", "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                return
            time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not start: {self.log()}")

    def log(self) -> str:
        path = self.root / "pgbouncer.log" if self.root else None
        return path.read_text()[-2000:] if path and path.exists() else ""

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                self.process.kill()
        self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


class PrivateHaproxy:
    """HAProxy (Debian's package) in HTTP mode in front of web processes, on a free loopback
    port, with an admin socket for `show stat` and `disable server` (the runtime API).

    - `balance`: `leastconn` spreads long-lived streams evenly (a new stream goes where the
      fewest are open); `roundrobin` is the other choice.
    - Health checks: `GET /health/ready` every 500 ms, down after 2 failures, up after 2
      successes; a server marked down has its open sessions shut, so streams reconnect.
    - `timeout tunnel 1h`: a WebSocket (after its 101) is a tunnel, idle between events;
      an SSE response is plain HTTP, held by `timeout server`/`client` (60 s), which the
      service's 15 s heartbeat keeps alive.
    - `retry-on conn-failure` + `option redispatch 1`: a request that could not connect (a
      killed process, before its health check fails) is sent to another server. Only
      connection failures: a request that reached a server is never replayed by the proxy.
    - Every response carries `X-Coursegen-Web: <server name>`, so a client can tell which web
      process served it (the 101 of a WebSocket too).
    """

    def __init__(self, servers: list[tuple[str, int]], balance: str = "leastconn") -> None:
        self.servers = servers
        self.balance = balance
        self.port = free_port()
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("haproxy") or (
            "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> Path:
        assert self.root is not None, "start() first"
        return self.root / "admin.sock"

    def config(self) -> str:
        servers = "".join(
            f"  server {name} 127.0.0.1:{port} check\n" for name, port in self.servers
        )
        return (
            "global\n"
            "  maxconn 8000\n"
            f"  stats socket {self.socket_path} mode 600 level admin\n"
            "defaults\n"
            "  mode http\n"
            "  timeout connect 2s\n"
            "  timeout client 60s\n"
            "  timeout server 60s\n"
            "  timeout tunnel 1h\n"
            "  timeout http-keep-alive 10s\n"
            "  timeout queue 10s\n"
            "  timeout check 2s\n"
            "  option forwardfor\n"
            "  retries 3\n"
            "  option redispatch 1\n"
            "  retry-on conn-failure\n"
            "frontend api\n"
            f"  bind 127.0.0.1:{self.port}\n"
            "  default_backend web\n"
            "backend web\n"
            f"  balance {self.balance}\n"
            "  option httpchk GET /health/ready\n"
            "  http-check expect status 200\n"
            "  default-server inter 500ms fastinter 250ms downinter 1s fall 2 rise 2 "
            "on-marked-down shutdown-sessions\n"
            "  http-response set-header X-Coursegen-Web %s\n" + servers
        )

    def start(self) -> None:
        binary = self.binary()
        assert binary is not None, "haproxy is not installed"
        self.root = Path(tempfile.mkdtemp(prefix="coursegen-haproxy-"))
        config = self.root / "haproxy.cfg"
        config.write_text(self.config())
        check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy config refused: {check.stdout!r} {check.stderr!r}")
        log = (self.root / "haproxy.log").open("ab")
        # -db: stay in the foreground (no daemon), so this process owns it and can kill it.
        self.process = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.log()}")
            if self.socket_path.exists():
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), 0.5),
                ):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"haproxy did not start: {self.log()}")

    def command(self, line: str) -> str:
        """One runtime API command over the admin socket (e.g. `show stat`)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """Each server's status as the health checks see it: UP, DOWN, MAINT, …"""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "web" and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = row["status"].split(" ")[0]
        return out

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.command(f"{'enable' if enabled else 'disable'} server web/{name}")

    def log(self) -> str:
        path = self.root / "haproxy.log" if self.root else None
        return path.read_text(errors="replace")[-2000:] if path and path.exists() else ""

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
