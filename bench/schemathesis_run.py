"""The long schemathesis run against the GraphQL endpoint (issue 6): at least 10,000 generated
operations, signed in, on a production-configured web process over a private PostgreSQL.

    PYTHONPATH=. .venv/bin/python -m bench.schemathesis_run [--examples 350] [--seed 20261129]

The checks are tests/graphql_fuzz.py's (the same as the CI test, tests/test_schemathesis.py,
which sends a few hundred): no 5xx, no unexpected GraphQL error, no internal detail in any body.
Prints the number of requests, the HTTP statuses, the error codes seen, the failures found and
the time taken. The PostgreSQL cluster lives in a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
from pathlib import Path

import httpx

from models import db
from settings import Settings
from tests.graphql_fuzz import fuzz
from tests.servers import PrivatePostgres, free_port
from tests.support import make_course, sign_up
from tests.test_live_support import spawn_web, stop, wait_ready

SECRET = "schemathesis-run-secret-key-that-is-long-enough-0123456789"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=350, help="per root field")
    parser.add_argument("--seed", type=int, default=20261129)
    args = parser.parse_args()
    pg = PrivatePostgres()
    web = None
    with tempfile.TemporaryDirectory(prefix="coursegen-fuzz-") as work:
        try:
            await asyncio.to_thread(pg.start)
            settings = Settings(DATABASE_URL=pg.url, SECRET_KEY=SECRET)
            await db.apply_migrations(settings)
            await db.connect(settings)
            port = free_port()
            # As deployed: production settings (introspection and suggestions off, real
            # budgets and log-in limits, the production password hashing).
            web = spawn_web(
                settings,
                port,
                data_dir=Path(work),
                log_file=Path(work) / "web.log",
                extra={"COURSEGEN_ENV": "production"},
            )
            base = f"http://127.0.0.1:{port}"
            await wait_ready(base, web)
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                user, other = await sign_up(client), await sign_up(client)
            ids: list[str] = [str(user.id), str(other.id)]
            for owner, size in ((user.id, 3), (other.id, 1)):
                tree = await make_course(owner, subjects=size, topics=size)
                ids += [str(i) for i in (tree.course_id, *tree.subject_ids, *tree.topic_ids)]

            report = await asyncio.to_thread(
                fuzz, base, user.token, ids, examples=args.examples, seed_value=args.seed
            )
            print(
                f"requests: {report.requests} in {report.seconds:.0f} s "
                f"({report.requests / report.seconds:.0f}/s), {len(report.by_operation)} root "
                f"fields x {args.examples} examples, seed {args.seed}"
            )
            print(f"HTTP statuses: {dict(sorted(report.statuses.items()))}")
            print(f"error codes: {dict(report.codes.most_common())}")
            print(f"failures: {len(report.failures)}")
            for failure in report.failures[:20]:
                print(failure)
            print(f"web process still up: {'yes' if web.poll() is None else 'NO'}")
        finally:
            if web is not None:
                stop(web)
            await db.close()
            await asyncio.to_thread(pg.close)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(main())
