"""Where one dashboard request spends its time: SQL vs Python, in-process (no HTTP server).

    PYTHONPATH=. .venv/bin/python -m bench.profile_dashboard \
        --database-url postgres://postgres@127.0.0.1:5432/coursegen_bench \
        [--requests 20] [--explain] [--concurrency 10] [--cprofile 5]

Runs the app from `create_app` over httpx's ASGI transport against a database filled by
`bench.dataset`, logs in as bench-user-0, and sends the dashboard query of
`bench.dashboard_load` sequentially. Every statement Tortoise sends is timed around the driver
call (`execute_query` / `execute_query_dict`: round trip plus the driver decoding the rows), so
the report splits each request into SQL time and the rest (GraphQL execution, resolvers,
serialization). `--explain` adds PostgreSQL's own execution time per statement (EXPLAIN
ANALYZE); `--cprofile` prints the hottest functions over a few requests.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import logging
import pstats
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

import httpx
from tortoise import connections

from bench.dashboard_load import DASHBOARD, EMAIL, LOG_IN, PASSWORD
from bench.dataset import build_settings

_statements: list[tuple[str, list[Any] | None, float, int]] = []
_gc = {"started": 0.0, "seconds": 0.0, "collections": 0, "gen2": 0}


def _gc_callback(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc["started"] = time.thread_time()
    else:
        _gc["seconds"] += time.thread_time() - _gc["started"]
        _gc["collections"] += 1
        _gc["gen2"] += info.get("generation") == 2


def _instrument(client_class: type) -> None:
    """Time every read a client of this class runs (patched on the class, this process only)."""
    for name in ("execute_query", "execute_query_dict"):
        original = getattr(client_class, name)

        async def timed(
            self: Any, query: str, values: list | None = None, *, _o: Any = original
        ) -> Any:
            started = time.perf_counter()
            result = await _o(self, query, values)
            rows = result if isinstance(result, list) else result[1]
            _statements.append((query, values, time.perf_counter() - started, len(rows)))
            return result

        setattr(client_class, name, timed)


def _label(query: str) -> str:
    q = " ".join(query.split())
    frm = q.upper().find(" FROM ")
    table = q[frm + 6 :].split(" ")[0].strip('"') if frm >= 0 else "?"
    kind = "count" if "COUNT(" in q.upper() else "select"
    return f"{kind} {table}"


async def main_async(args: argparse.Namespace) -> int:
    settings = build_settings(args.database_url)
    logging.disable(logging.INFO)
    from app import create_app  # after settings: create_app configures logging

    app = create_app(settings)
    logging.disable(logging.INFO)
    # The app's own lifespan (connect, per-app state), as uvicorn would run it.
    async with app.router.lifespan_context(app):
        if args.gc_threshold:
            gc.set_threshold(*args.gc_threshold)
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        print(f"gc thresholds {gc.get_threshold()}, {gc.get_freeze_count()} objects frozen")
        _instrument(type(connections.get("default")))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=60
        ) as client:
            response = await client.post(
                "/graphql",
                json={
                    "query": LOG_IN,
                    "variables": {"input": {"email": EMAIL, "password": PASSWORD}},
                },
            )
            token = response.json()["data"]["logIn"]["accessToken"]
            headers = {"authorization": f"Bearer {token}"}
            body = {"query": args.query}

            async def one() -> tuple[float, list[tuple[str, list[Any] | None, float, int]], int]:
                _statements.clear()
                started = time.perf_counter()
                r = await client.post("/graphql", json=body, headers=headers)
                elapsed = time.perf_counter() - started
                if r.status_code != 200 or b'"errors"' in r.content:
                    raise SystemExit(f"dashboard failed: {r.status_code} {r.text[:500]}")
                return elapsed, list(_statements), len(r.content)

            for _ in range(args.warmup):
                await one()
            totals, sql_totals, per_statement = [], [], defaultdict(list)
            size = 0
            last: list[tuple[str, list[Any] | None, float, int]] = []
            for _ in range(args.requests):
                elapsed, statements, size = await one()
                totals.append(elapsed)
                sql_totals.append(sum(s[2] for s in statements))
                for query, _values, seconds, rows in statements:
                    per_statement[(_label(query), rows)].append(seconds)
                last = statements

            ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
            print(
                f"{args.requests} sequential dashboard requests in-process ({size} bytes each, "
                f"{len(last)} SQL statements each):"
            )
            print(
                f"  total  median {ms(totals):7.1f} ms   SQL (driver calls) median "
                f"{ms(sql_totals):6.1f} ms   "
                f"rest (GraphQL/Python) ~{ms(totals) - ms(sql_totals):6.1f} ms"
            )
            print("  per statement (median ms, rows):")
            for (label, rows), timings in per_statement.items():
                print(
                    f"    {label:<28} {ms(timings):7.2f} ms  {rows:>5} rows  "
                    f"(x{len(timings) // len(totals)})"
                )

            if args.concurrency:
                gc.callbacks.append(_gc_callback)
                for concurrency in (1, args.concurrency):
                    rounds = max(1, args.requests // concurrency)
                    _gc.update(seconds=0.0, collections=0, gen2=0)
                    cpu0, t0 = time.process_time(), time.perf_counter()
                    for _ in range(rounds):
                        await asyncio.gather(*(one() for _ in range(concurrency)))
                    n = rounds * concurrency
                    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                    print(
                        f"  {concurrency:>3} at a time: {n} requests, {n / wall:5.1f} req/s, "
                        f"CPU {cpu / n * 1000:6.1f} ms/request, "
                        f"of which GC {_gc['seconds'] / n * 1000:5.1f} ms "
                        f"({_gc['collections']} collections, {_gc['gen2']} of generation 2)"
                    )
                gc.callbacks.remove(_gc_callback)

            if args.explain and not settings.uses_sqlite:
                print("  PostgreSQL execution time (EXPLAIN ANALYZE, one run each):")
                connection = connections.get("default")
                for index, (query, values, _s, _r) in enumerate(last):
                    _, rows = await connection.execute_query(
                        f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", values or []
                    )
                    plan = rows[0]["QUERY PLAN"]
                    plan = json.loads(plan) if isinstance(plan, str) else plan
                    print(
                        f"    {index + 1:>2}. {_label(query):<28} exec "
                        f"{plan[0]['Execution Time']:7.2f} ms  "
                        f"plan {plan[0]['Planning Time']:5.2f} ms  "
                        f"top node: {plan[0]['Plan']['Node Type']}"
                    )
            if args.show_sql:
                for query, values, _s, _r in last:
                    shown = values if values is None or len(values) < 6 else f"{len(values)} values"
                    print(f"    SQL: {' '.join(query.split())[:400]}  -- {shown}")

            if args.cprofile:
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(args.cprofile):
                    await one()
                profiler.disable()
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
                stats.print_stats(25)
                print(f"cProfile over {args.cprofile} requests, by own time:")
                print("\n".join(out.getvalue().splitlines()[:60]))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile_dashboard", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument(
        "--query",
        default=DASHBOARD,
        help="another GraphQL query to compare (default: the dashboard)",
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--explain", action="store_true", help="EXPLAIN ANALYZE each statement (PostgreSQL)"
    )
    parser.add_argument("--show-sql", action="store_true", help="print each statement")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        metavar="N",
        help="also compare CPU and GC time per request at 1 and N requests in flight",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="experiment: gc.freeze() after start-up (as an app could, once started)",
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        nargs=3,
        metavar=("G0", "G1", "G2"),
        help="experiment: gc.set_threshold(G0, G1, G2) before the requests",
    )
    parser.add_argument(
        "--cprofile", type=int, default=0, metavar="N", help="profile N more requests"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
