"""Operator commands: `python manage.py migrate | makemigrations | seed-demo | serve`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


def _makemigrations() -> None:
    from tortoise.cli.cli import main as tortoise_main

    sys.argv = ["tortoise", "-c", "models.tortoise_cli.TORTOISE_ORM", "makemigrations"]
    tortoise_main()


async def _migrate() -> None:
    from models import db
    from settings import Settings

    settings = Settings()
    try:
        await db.apply_migrations(settings)
    finally:
        await db.close()
    print("migrations applied")


async def _seed_demo() -> None:
    from models import db
    from services import demo
    from settings import Settings

    settings = Settings()
    try:
        await db.apply_migrations(settings)
        await db.connect(settings)
        created = await demo.seed_demo_account()
    finally:
        await db.close()
    print("demo account created" if created else "database not empty; nothing seeded")


async def _work() -> None:
    """A generation worker: takes jobs from the Redis queue until SIGTERM/SIGINT."""
    import signal

    import keyspace
    from ai.routed_writer import build_writer
    from ai.writer import CourseWriter
    from generation.redis_queue import RedisJobWorker
    from models import db
    from redis_connection import connect_redis, connect_subscriber
    from services import scopes
    from settings import Settings
    from subscriptions.redis_broker import RedisPublisher
    from subscriptions.redis_progress_log import RedisProgressLog
    from sync import poke
    from web.logs import configure_logging

    configure_logging()
    settings = Settings()
    if not settings.redis_url:
        sys.exit("The worker needs REDIS_URL; without it the web process runs jobs itself.")
    if settings.worker_metrics_port:  # model calls and job outcomes happen here, not in web
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port)
    keyspace.use(settings.redis_namespace)
    client = connect_redis(settings.redis_url)
    subscriber = connect_subscriber(settings.redis_url)  # the cancel channel's connections
    await db.connect(settings)
    writer: CourseWriter = build_writer(settings, client)
    worker = RedisJobWorker(
        client, settings, writer, RedisProgressLog(client), subscriber=subscriber
    )
    # A finished course pokes its readers on every web process (syncPoke).
    scopes.on_commit(poke.listener(RedisPublisher(client)))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run()
    finally:
        await writer.aclose()
        await subscriber.aclose()
        await client.aclose()
        await db.close()


async def _set_role(email: str, role: str) -> None:
    """grant-admin / revoke-admin: the user with this email becomes an operator, or not."""
    from models import UserRole, db
    from services import operations
    from services.errors import DomainError
    from settings import Settings

    settings = Settings()
    try:
        await db.connect(settings)
        user = await operations.set_role(email, UserRole(role))
    except DomainError:
        sys.exit(f"No user has the email {email!r}.")
    finally:
        await db.close()
    print(f"{user.email} now has the role {user.role.value}")


def _export_schema() -> None:
    from pathlib import Path

    from schema import build_schema
    from settings import Settings

    Path("schema.graphql").write_text(str(build_schema(Settings())) + "\n")
    print("wrote schema.graphql")


def _serve(host: str, port: int) -> None:
    import uvicorn

    from settings import Settings, SettingsError

    try:
        settings = Settings()  # fail with the reason, not a traceback, when it cannot run
    except SettingsError as error:
        sys.exit(f"coursegen cannot start: {error}")

    uvicorn.run(
        "app:create_app",
        factory=True,
        host=host,
        port=port,
        timeout_graceful_shutdown=10,
        proxy_headers=True,
        ws_max_size=settings.ws_max_message_bytes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="manage.py")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database migrations")
    sub.add_parser("makemigrations", help="write a migration for model changes")
    sub.add_parser("seed-demo", help="seed the demo account into an empty database")
    sub.add_parser("export-schema", help="write the GraphQL schema to schema.graphql")
    sub.add_parser("worker", help="run generation jobs from the Redis queue")
    for name, role in (("grant-admin", "admin"), ("revoke-admin", "user")):
        command = sub.add_parser(name, help=f"give a user the role {role} (by email)")
        command.add_argument("email")
        command.set_defaults(role=role)
    serve = sub.add_parser("serve", help="run the web service")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args()
    if args.command == "migrate":
        asyncio.run(_migrate())
    elif args.command == "makemigrations":
        _makemigrations()
    elif args.command == "seed-demo":
        asyncio.run(_seed_demo())
    elif args.command == "export-schema":
        _export_schema()
    elif args.command == "worker":
        asyncio.run(_work())
    elif args.command in ("grant-admin", "revoke-admin"):
        asyncio.run(_set_role(args.email, args.role))
    else:
        _serve(args.host, args.port)


if __name__ == "__main__":
    main()
