"""The dashboard benchmark in one command: fresh database, dataset, production server, load.

    PYTHONPATH=. .venv/bin/python -m bench.run_dashboard [--sqlite] [--duration 20] \
        [--connections 1,10]

On PostgreSQL: drops and creates `coursegen_bench`, runs the release step
(`manage.py migrate` with COURSEGEN_ENV=production), fills the dataset (bench.dataset), splits
one request into SQL and Python time in-process (bench.profile_dashboard, before the server
starts so it competes with nothing), then starts the server as deployed:

    uvicorn app:create_app --factory --host 127.0.0.1 --port 8031 \
        --no-access-log --log-level warning

with COURSEGEN_ENV=production, a 40-character SECRET_KEY, COURSEGEN_AUTO_MIGRATE=false and the
bench DATABASE_URL; waits for /health/ready; runs bench.dashboard_load at each connection count;
stops the server (SIGTERM, then SIGKILL after 15 s) and prints the table. `--sqlite` does the
same again on a fresh SQLite file. Every process it starts, it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET_KEY = "bench-server-secret-key-0123456789abcdef"
assert len(SECRET_KEY) == 40


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COURSEGEN_") and k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}
    }
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url,
        COURSEGEN_ENV="production",
        SECRET_KEY=SECRET_KEY,
        COURSEGEN_AUTO_MIGRATE="false",
        **extra,
    )
    return env


def _run(args: list[str], env: dict[str, str], title: str) -> str:
    print(f"\n$ {title}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(args, cwd=ROOT, env=env, text=True, capture_output=True, check=False)
    output = (result.stdout + result.stderr).rstrip()
    if output:
        print(output, flush=True)
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {title}")
    print(f"  ({time.perf_counter() - started:.1f}s)", flush=True)
    return result.stdout


async def _recreate_postgres(admin_url: str, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


def _uvicorn() -> list[str]:
    script = Path(PYTHON).parent / "uvicorn"
    return [str(script)] if script.exists() else [PYTHON, "-m", "uvicorn"]


def server_command(port: int, workers: int = 1) -> list[str]:
    """coursegen as the Procfile runs it, on loopback, without the access log."""
    command = [
        *_uvicorn(),
        "app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    return command


def _wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 60) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"/health/ready not 200 after {timeout:.0f}s")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.terminate()  # SIGTERM to this pid only: uvicorn shuts down gracefully
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=5)


def bench_backend(label: str, database_url: str, args: argparse.Namespace, workdir: Path) -> str:
    env = _env(database_url)
    _run(
        [PYTHON, "manage.py", "migrate"],
        env,
        f"[{label}] release step: COURSEGEN_ENV=production python manage.py migrate",
    )
    dataset = [PYTHON, "-m", "bench.dataset", "--database-url", database_url, "--reset"]
    _run(dataset, env, f"[{label}] " + " ".join(dataset[1:]))
    if args.profile:
        profile = [
            PYTHON,
            "-m",
            "bench.profile_dashboard",
            "--database-url",
            database_url,
            "--requests",
            "20",
        ]
        if label == "PostgreSQL":
            profile.append("--explain")
        _run(profile, env, f"[{label}] SQL vs Python, in-process: " + " ".join(profile[1:]))

    base = f"http://127.0.0.1:{args.port}"
    command = server_command(args.port)
    log_path = workdir / f"server-{label.lower()}.log"
    print(
        f"\n$ [{label}] COURSEGEN_ENV=production COURSEGEN_AUTO_MIGRATE=false "
        f"SECRET_KEY=<40 chars> DATABASE_URL={database_url} {' '.join(command)}",
        flush=True,
    )
    result: subprocess.CompletedProcess[str] | None = None
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = _wait_ready(base, server)
        print(f"  server pid {server.pid} ready after {ready:.1f}s", flush=True)
        load = [
            PYTHON,
            "-m",
            "bench.dashboard_load",
            "--url",
            f"{base}/graphql",
            "--connections",
            args.connections,
            "--duration",
            str(args.duration),
            "--warmup",
            str(args.warmup),
            "--server-pid",
            str(server.pid),
            "--quiet-wait",
            str(args.quiet_wait),
        ]
        print(f"\n$ [{label}] " + " ".join(load[1:]), flush=True)
        result = subprocess.run(
            load, cwd=ROOT, env=env, text=True, capture_output=True, check=False
        )
        print((result.stdout + result.stderr).rstrip(), flush=True)
    finally:
        _stop(server)
        # -15: uvicorn re-raises SIGTERM once its graceful shutdown is done.
        print(f"  server stopped (exit {server.returncode})", flush=True)
        server_log = log_path.read_text(errors="replace").strip()
        if server_log:
            lines = server_log.splitlines()
            print(f"  server log ({len(lines)} lines, last 20):")
            for line in lines[-20:]:
                print(f"    {line[:300]}")
    if result.returncode != 0:
        print(f"  the load script reported errors (exit {result.returncode})", flush=True)
    table = result.stdout[result.stdout.find("| connections") :].strip()
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run_dashboard", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL URL allowed to create databases",
    )
    parser.add_argument("--database", default="coursegen_bench", help="dropped and created")
    parser.add_argument("--sqlite", action="store_true", help="also run on a fresh SQLite file")
    parser.add_argument("--sqlite-only", action="store_true", help="only SQLite")
    parser.add_argument("--connections", default="1,10")
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--port", type=int, default=8031)
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=15,
        help="before each level, wait up to this long for an idle machine",
    )
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the in-process SQL/Python split",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    tables: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="coursegen-bench-") as tmp:
        workdir = Path(tmp)
        if not args.sqlite_only:
            asyncio.run(_recreate_postgres(args.admin_url, args.database))
            url = args.admin_url.rsplit("/", 1)[0] + f"/{args.database}"
            print(f"fresh PostgreSQL database {args.database}", flush=True)
            tables.append(("PostgreSQL", bench_backend("PostgreSQL", url, args, workdir)))
        if args.sqlite or args.sqlite_only:
            path = workdir / "bench.sqlite3"
            tables.append(("SQLite", bench_backend("SQLite", f"sqlite://{path}", args, workdir)))
    print(
        f"\n## Dashboard benchmark ({time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"{os.cpu_count()} cores, {time.perf_counter() - started:.0f}s in all)"
    )
    for label, table in tables:
        print(f"\n### {label}\n\n{table}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
