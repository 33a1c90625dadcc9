"""Database lifecycle: Tortoise configuration, versioned migrations, connect and close."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate as _migrate

from settings import Settings

MODEL_MODULES = [
    "models.accounts",
    "models.courses",
    "models.learning",
    "models.generation",
    "models.sync",
    "models.usage",
]
MIGRATIONS_MODULE = "models.migrations"


def database_url(settings: Settings, url: str | None = None) -> str:
    """The Tortoise URL (of the primary, or of `url`: a replica), with pool sizes for
    PostgreSQL and WAL for SQLite."""
    url = url or settings.resolved_database_url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.scheme in {"postgres", "postgresql", "asyncpg"}:
        query.setdefault("minsize", str(settings.db_pool_min))
        query.setdefault("maxsize", str(settings.db_pool_max))
        return urlunsplit(parts._replace(scheme="postgres", query=urlencode(query)))
    if parts.scheme == "sqlite":
        path = url.removeprefix("sqlite://").split("?", 1)[0]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers run while the single writer commits.
        query.setdefault("journal_mode", "WAL")
        query.setdefault("foreign_keys", "ON")
        query.setdefault("busy_timeout", "5000")
        return f"sqlite://{path}?{urlencode(query)}"
    return url


async def _keep_session(connection: Any) -> None:
    return None


def connection_config(settings: Settings, url: str | None = None) -> str | dict[str, Any]:
    """The default connection (or a replica's, at `url`: the same pool, timeouts and pooler
    rules): a URL for SQLite; for PostgreSQL the expanded form, so that
    every pooled connection gets server-side timeouts (a runaway statement is cancelled by the
    server after `db_statement_timeout_ms`, a transaction left idle after
    `db_idle_in_transaction_timeout_ms`) and a connect timeout."""
    url = database_url(settings, url)
    if not url.startswith("postgres"):
        return url
    config = expand_db_url(url)
    credentials = config["credentials"]
    if settings.database_pooler == "transaction":
        # Behind PgBouncer in transaction mode a server connection changes hands after every
        # transaction: a named prepared statement would be missing on the next one, and
        # startup parameters are refused ("unsupported startup parameter"). The server-side
        # timeouts come from the role, the database or the pooler's connect_query instead.
        credentials["statement_cache_size"] = 0
        credentials.pop("server_settings", None)
    else:
        server_settings = dict(credentials.get("server_settings") or {})
        server_settings.setdefault("statement_timeout", str(settings.db_statement_timeout_ms))
        server_settings.setdefault(
            "idle_in_transaction_session_timeout", str(settings.db_idle_in_transaction_timeout_ms)
        )
        credentials["server_settings"] = server_settings
    # A connection going back to the pool is not reset with `RESET ALL; UNLISTEN *; ...`: we
    # keep no session state (no SET, LISTEN or advisory lock), so it was one round trip per
    # checkout for nothing, and behind PgBouncer its RESET ALL undid the timeouts that the
    # pooler's connect_query sets. An open transaction is still rolled back by asyncpg.
    credentials["reset"] = _keep_session
    credentials.setdefault("timeout", settings.db_connect_timeout_seconds)
    credentials.setdefault("command_timeout", settings.db_command_timeout_seconds)
    # Connections idle this long are closed: after a database restart the pool refills.
    credentials.setdefault("max_inactive_connection_lifetime", 300.0)
    return config


def tortoise_config(settings: Settings) -> dict[str, Any]:
    return {
        "connections": {"default": connection_config(settings)},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def connect(settings: Settings) -> None:
    # The global fallback makes the connections visible to every task, not only to the one
    # that ran the lifespan (uvicorn serves requests in other tasks).
    await Tortoise.init(config=tortoise_config(settings), _enable_global_fallback=True)


async def apply_migrations(settings: Settings) -> None:
    """Apply every migration not yet applied (idempotent; safe at each start)."""
    config = tortoise_config(settings)
    # In a context of its own, closed afterwards, so it leaves no state behind.
    async with TortoiseContext() as context:
        await context.init(config=config)
        await _migrate(config=config)


async def close() -> None:
    await Tortoise.close_connections()
