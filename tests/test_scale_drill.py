"""The scale drill, slim (PostgreSQL + Redis run only): 2 web processes and 2 workers behind
HAProxy, PgBouncer in transaction mode, a private Redis; ~50 live subscribers (SSE and
WebSocket through the balancer), 5 sync devices, 3 generations and the dashboard; midway the
busiest web process and the worker holding the most jobs get SIGKILL. Nothing may be lost or
repeated: every subscriber sees each event of its job once, every acknowledged mutation is
applied exactly once, every job finishes. The full drill and its figures: bench/scale_drill.py.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest

from bench.scale_drill import Plan, clean, run_drill, seed, service_env
from bench.topology import Database, Topology
from settings import Settings


async def test_killing_a_web_process_and_a_worker_loses_and_repeats_nothing(
    settings: Settings,
) -> None:
    url = settings.resolved_database_url
    if not url.startswith("postgres"):
        pytest.skip("runs in the PostgreSQL + Redis run")
    missing = Topology.missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"not installed: {missing} (.ci/apt-packages lists them)")
        pytest.skip(f"not installed: {missing} (Debian packages of the same names)")
    parts = urlsplit(url)
    plan = Plan(
        seconds=6,
        subscribers=50,
        devices=5,
        generations=3,
        kill_at=2.0,
        subjects=2,
        topics=6,
        model_latency_ms=1500,  # a job takes ~5 s: still running at the kill
        claim_idle_seconds=1.0,
        drain=60,
        scale_seconds=0,
        dashboard_courses=20,
        dashboard_subjects=2,
        dashboard_topics=2,
    )
    topology = Topology(
        Database(parts.hostname or "127.0.0.1", parts.port or 5432, parts.path.lstrip("/")),
        web=2,
        workers=2,
        pool_size=8,
        env={**service_env(plan), "DB_POOL_MAX": "5"},
    )
    try:
        fixture = await seed(topology.secret_key, plan)
        await topology.start()
        figures = await run_drill(topology, fixture, plan)
    finally:
        topology.close()
    live, sync, jobs = figures["live"], figures["sync"], figures["jobs"]
    assert figures["subscribers_connected"] == 50
    assert live["events_lost"] == 0 and live["events_duplicated"] == 0, live
    assert live["unfinished_subscribers"] == 0 and live["out_of_order_subscribers"] == 0, live
    # Both transports went through HAProxy to both web processes, and the ones on the killed
    # process came back through it.
    assert live["served_by"] == {"sse": ["web0", "web1"], "ws": ["web0", "web1"]}, live
    assert live["reconnected"] > 0, live
    assert sync["acked"] == sync["sent"] > 0 and sync["unacked"] == 0, sync
    assert sync["lost"] == 0 and sync["applied_twice"] == 0 and not sync["problems"], sync
    assert jobs["succeeded"] == 3 and jobs["unfinished"] == 0, jobs
    assert jobs["taken_over"] >= 1, jobs  # the killed worker held a job, another finished it
    assert figures["dashboard"]["served"] > 0
    assert clean(figures)
