"""One Settings object, read from the environment (and `.env`), for both ways to run.

Embedded default: nothing set, SQLite under ./data/, in-process adapters, a development
secret generated once and kept under ./data/. Production (`COURSEGEN_ENV=production`): the
service refuses to start without a SECRET_KEY instead of inventing one.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import keyspace


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class SettingsError(RuntimeError):
    """The configuration cannot run; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    env: Environment = Field(default=Environment.DEVELOPMENT, alias="COURSEGEN_ENV")
    data_dir: Path = Field(default=Path("data"), alias="COURSEGEN_DATA_DIR")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    # One server, `redis://host:6379/0` (`rediss://` TLS), or a Redis Cluster,
    # `redis+cluster://host:port,host:port/` (`rediss+cluster://` TLS); see redis_connection.py.
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    # Every Redis key and channel starts with `<namespace>:`; deployments sharing a Redis differ.
    redis_namespace: str = Field(default=keyspace.DEFAULT, alias="REDIS_NAMESPACE")
    secret_key: str | None = Field(default=None, alias="SECRET_KEY", repr=False)

    # Tokens: the access token is short-lived; the refresh token rotates on every use.
    jwt_issuer: str = "coursegen"
    jwt_audience: str = "coursegen-api"
    access_token_ttl_seconds: int = 15 * 60
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # A client that lost the response of a refresh may retry with the old token this long.
    refresh_reuse_grace_seconds: int = 10

    # argon2 cost profile (argon2.profiles): tests use CHEAPEST, production may not.
    argon2_profile: str = Field(default="RFC_9106_LOW_MEMORY", alias="COURSEGEN_ARGON2_PROFILE")

    db_pool_min: int = 1
    db_pool_max: int = 10

    # Course generation: in-process workers (embedded) and the pipeline's bounds.
    generation_workers: int = Field(default=2, ge=1, le=64)
    generation_topic_concurrency: int = Field(default=8, ge=1, le=256)
    generation_global_concurrency: int = Field(default=32, ge=1, le=4096)
    generation_max_attempts: int = Field(default=3, ge=1, le=20)
    generation_claim_idle_seconds: float = Field(default=30.0, gt=0)
    # Simulated latency of each offline-writer call, for demos and benchmarks.
    offline_writer_latency_ms: int = Field(default=0, ge=0, alias="COURSEGEN_OFFLINE_LATENCY_MS")
    # Requests for new courses per user, by tier (a `limits` rate string).
    generation_rate_free: str = "5/hour"
    generation_rate_standard: str = "20/hour"
    generation_rate_premium: str = "60/hour"
    # Model endpoints and router policy: JSON, or a path to a JSON file (see ai/config.py).
    # Unset: the offline deterministic course writer.
    models: str | None = Field(default=None, alias="COURSEGEN_MODELS")

    auto_migrate: bool | None = Field(default=None, alias="COURSEGEN_AUTO_MIGRATE")
    seed_demo: bool | None = Field(default=None, alias="COURSEGEN_SEED_DEMO")

    # --- Live progress (subscriptions/, web/sse.py, web/graphql_sse.py) -------------------
    # Limits are per web process. Environment variables: the field names in capitals.
    live_max_subscriptions_per_connection: int = Field(default=20, ge=1, le=1000)
    live_max_connections_per_user: int = Field(default=20, ge=1, le=100_000)
    # Seconds a WebSocket may stay open without `connection_init` (both subprotocols).
    live_connection_init_timeout_seconds: float = Field(default=10.0, gt=0)
    # Events waiting to be sent on one connection; beyond this the client is disconnected.
    live_send_queue_size: int = Field(default=256, ge=1)
    # A single write that blocks this long (a stalled client) ends an SSE stream.
    live_send_timeout_seconds: float = Field(default=10.0, gt=0)
    # SSE streams end after this long; clients reconnect and resume (Last-Event-ID / after).
    live_sse_max_lifetime_seconds: float = Field(default=600.0, gt=0)
    live_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # `retry:` sent to EventSource clients: how soon they reconnect, in milliseconds.
    live_sse_retry_ms: int = Field(default=1000, ge=0)
    live_stream_token_ttl_seconds: int = Field(default=300, ge=10, le=3600)
    # After SIGTERM: not ready and refusing new live connections for this long (live ones are
    # closed at once so clients reconnect elsewhere), then the server stops.
    live_drain_seconds: float = Field(default=2.0, ge=0)
    # A quiet job's log is re-read this often (a lost wake-up costs at most this much), and
    # its end is then also looked up in the database.
    live_log_poll_seconds: float = Field(default=5.0, gt=0)
    # Open connections whose session was logged out are closed within this long.
    live_session_check_seconds: float = Field(default=60.0, gt=0)

    # --- Offline sync (sync/, docs/sync.md) -------------------------------------------------
    # Tombstones (DEL entries) and stored mutation results older than this are deleted; a
    # client whose cookie predates a deleted tombstone gets that scope in `resetScopes`.
    sync_tombstone_horizon_days: float = Field(default=30.0, gt=0)
    # How often one process runs that garbage collection (from pulls), at most.
    sync_gc_interval_seconds: float = Field(default=3600.0, ge=0)

    # --- Request limits and attack surface (schema/cost.py, web/limits.py, web/csrf.py) ------
    # What one GraphQL document may ask, checked before any resolver runs.
    max_query_depth: int = Field(default=10, ge=2, le=100)
    max_query_aliases: int = Field(default=30, ge=1, le=1000)
    max_query_tokens: int = Field(default=3000, ge=50, le=100_000)
    # Static cost (see schema/cost.py): refused above this, whatever the budget says.
    max_query_cost: int = Field(default=200_000, ge=10)
    # Every response carries `extensions.cost` {requested, actual, remaining, limit}.
    report_query_cost: bool = True
    # Cost budgets (`limits` rate strings, a sliding window charged by each request's cost):
    # per user (authenticated) and per client IP (every request).
    cost_rate_user: str = "3000000/minute"
    cost_rate_ip: str = "6000000/minute"
    # Log-in attempts (services/accounts.log_in): per account from one IP, per account from
    # everywhere, per IP, and per known device (which skips the other three); sign-ups per IP.
    login_rate_account_ip: str = "10/15 minutes"
    login_rate_account: str = "100/hour"
    login_rate_ip: str = "60/15 minutes"
    login_rate_device: str = "20/15 minutes"
    signup_rate_ip: str = "20/hour"
    # Bodies larger than this are refused with 413 before being parsed.
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # A WebSocket message larger than this closes the connection with 1009 (uvicorn's own
    # default would be 16 MiB).
    ws_max_message_bytes: int = Field(default=256 * 1024, ge=1024)
    # A request that has not started its response after this long gets 504 (streams exempt).
    request_timeout_seconds: float = Field(default=15.0, gt=0)
    # PostgreSQL: a statement running longer is cancelled by the server; idle transactions too.
    db_statement_timeout_ms: int = Field(default=5000, ge=0)
    db_idle_in_transaction_timeout_ms: int = Field(default=10_000, ge=0)
    # Client-side bound on one statement's round trip (asyncpg's command_timeout): it fires
    # where the server-side timeout cannot, on a slow or stalled network to PostgreSQL, so a
    # connection is never held longer than this by one statement and the pool keeps turning.
    db_command_timeout_seconds: float = Field(default=10.0, gt=0)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # What sits between the service and PostgreSQL. "transaction": a pooler in transaction
    # pooling mode (PgBouncer): no prepared statement outlives a statement (asyncpg's cache
    # off) and no startup parameters are sent (PgBouncer refuses them); the two server-side
    # timeouts above must then be set where the pooler passes them on: on the role or the
    # database (ALTER ROLE … SET statement_timeout = …) or in PgBouncer's connect_query.
    database_pooler: Literal["none", "transaction"] = Field(default="none", alias="DATABASE_POOLER")
    # Read replicas (replicas/, docs/replicas.md): PostgreSQL streaming replicas, comma-separated
    # URLs. Dashboard and course-page queries and sync pulls read from one in rotation; all else,
    # and a user's reads until a replica has replayed that user's last write, from the primary.
    # Empty: everything on the primary (SQLite never has replicas).
    database_replica_urls: str = Field(default="", alias="DATABASE_REPLICA_URLS", repr=False)
    # A replica further behind the primary than this is out of rotation until it catches up.
    database_replica_max_lag_seconds: float = Field(
        default=5.0, gt=0, alias="DATABASE_REPLICA_MAX_LAG_SECONDS"
    )
    # How often each web process checks every replica (reachable, in recovery, lag).
    database_replica_check_seconds: float = Field(
        default=1.0, gt=0, alias="DATABASE_REPLICA_CHECK_SECONDS"
    )
    # Pool sizes are db_pool_min / db_pool_max above (per process); a request waiting for a
    # free connection is bounded by request_timeout_seconds.
    # Introspection and GraphiQL: None means on outside production, off in production.
    graphql_introspection: bool | None = None
    graphql_ide: bool | None = None
    # GET may carry queries (never mutations); off refuses every GET operation.
    graphql_get_queries: bool = True
    # The fast path (fastpath/): learned dashboard and course-page queries answered from a few
    # keyed SQL statements without graphql-core's executor (PostgreSQL only).
    graphql_fast_path: bool = True
    # Browser origins allowed by CORS and for cross-origin WebSocket handshakes (JSON lists).
    # Empty: CORS off; WebSockets only from the same origin or from non-browser clients.
    cors_allowed_origins: list[str] = Field(default_factory=list)
    websocket_allowed_origins: list[str] = Field(default_factory=list)
    # Apollo-style CSRF prevention on POST/GET with "simple" content types.
    csrf_prevention: bool = True
    # Responses at least this large are compressed (zstd, br, gzip by Accept-Encoding).
    compression_min_bytes: int = Field(default=1024, ge=0)
    # OpenTelemetry tracing (web/tracing.py): a span per HTTP request and per GraphQL
    # operation, exported over OTLP as the standard OTEL_* variables say
    # (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...). Off: no tracing code runs at all.
    tracing: bool = Field(default=False, alias="COURSEGEN_TRACING")

    # --- Persisted documents (web/persisted_queries.py) ----------------------------------
    # Automatic persisted queries (Apollo's APQ): a document registered under its SHA-256
    # is kept this long in Redis, or in an in-process LRU of `apq_cache_size` documents.
    apq_enabled: bool = True
    apq_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    apq_cache_size: int = Field(default=1000, ge=10, le=1_000_000)
    # Registration is bounded, since anyone may register: a document above this is run but
    # not stored; stored bytes per client IP and in all are rate-limited (limits' syntax, in
    # bytes), so what APQ holds in Redis stays under the total rate times `apq_ttl_seconds`.
    apq_max_document_bytes: int = Field(default=32 * 1024, ge=256)
    apq_register_bytes_client: str = "1048576/day"
    apq_register_bytes_total: str = "67108864/day"
    # The in-process store's bound in bytes (beside `apq_cache_size` documents).
    apq_cache_bytes: int = Field(default=16 * 1024 * 1024, ge=4096)
    # Trusted documents: a JSON manifest `{"<sha256>": "<document>"}` (or Apollo's persisted
    # query manifest) written at deploy time. When set, only those documents are executed,
    # on every transport; anything else is refused with OPERATION_NOT_TRUSTED.
    trusted_documents: Path | None = None

    # A `worker` process serves its Prometheus metrics (model calls, jobs) on this port.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # `/metrics` of a web process: behind `Authorization: Bearer <METRICS_TOKEN>` when set;
    # served on METRICS_PORT instead of the public port when set (a private interface).
    metrics_token: str | None = Field(default=None, repr=False)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Gauges read from shared state (queue depth, breakers in Redis) are refreshed by a
    # background task this often; a scrape never calls Redis.
    metrics_refresh_seconds: float = Field(default=5.0, gt=0)
    # Operation-name labels: only these names when set; otherwise the first
    # METRICS_MAX_OPERATION_LABELS distinct names a process sees, then `other`.
    metrics_operation_names: list[str] = Field(default_factory=list)
    metrics_max_operation_labels: int = Field(default=100, ge=0, le=10_000)

    @model_validator(mode="after")
    def _relaxed_budgets_in_tests(self) -> Settings:
        # The test suite sends thousands of requests from one IP; tests that check these limits
        # set them explicitly (on the settings object) for the duration of the test.
        if self.env is Environment.TEST:
            for name in (
                "cost_rate_user",
                "cost_rate_ip",
                "login_rate_account",
                "login_rate_account_ip",
                "login_rate_device",
                "login_rate_ip",
                "signup_rate_ip",
            ):
                if name not in self.model_fields_set:
                    setattr(self, name, "1000000/minute")
            # Tests compare whole response bodies; the cost tests turn the report on.
            if "report_query_cost" not in self.model_fields_set:
                self.report_query_cost = False
        return self

    @property
    def introspection_enabled(self) -> bool:
        if self.graphql_introspection is not None:
            return self.graphql_introspection
        return not self.is_production

    @property
    def ide_enabled(self) -> bool:
        if self.graphql_ide is not None:
            return self.graphql_ide
        return not self.is_production

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> Settings:
        if self.env is Environment.PRODUCTION:
            if not self.secret_key:
                raise SettingsError(
                    "SECRET_KEY is not set. In production (COURSEGEN_ENV=production) the service "
                    "will not invent one: tokens signed with a throwaway key would be invalid on "
                    "every other process and after every restart. Set SECRET_KEY to a random "
                    "string of at least 32 characters."
                )
            if len(self.secret_key) < 32:
                raise SettingsError("SECRET_KEY must be at least 32 characters long.")
            if self.argon2_profile == "CHEAPEST":
                raise SettingsError("COURSEGEN_ARGON2_PROFILE=CHEAPEST is for tests only.")
        return self

    @field_validator("redis_namespace")
    @classmethod
    def _usable_namespace(cls, value: str) -> str:
        if not keyspace.valid(value):
            raise ValueError(
                "REDIS_NAMESPACE must be 1 to 64 of A-Z a-z 0-9 _ . - (no ':' or braces)"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _usable_redis_url(cls, value: str | None) -> str | None:
        # A cluster URL's mistakes (a database number, a node without a host) are told at
        # start-up, not at the first command.
        from redis_connection import is_cluster_url, parse_cluster_url

        if value and is_cluster_url(value):
            parse_cluster_url(value)
        return value

    @field_validator("argon2_profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        from argon2 import profiles

        if not isinstance(getattr(profiles, value, None), profiles.Parameters):
            raise ValueError("COURSEGEN_ARGON2_PROFILE must name a profile of argon2.profiles")
        return value

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite://{self.data_dir / 'coursegen.sqlite3'}"

    @property
    def uses_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def replica_urls(self) -> list[str]:
        return [url.strip() for url in self.database_replica_urls.split(",") if url.strip()]

    @model_validator(mode="after")
    def _replicas_need_postgres(self) -> Settings:
        if self.replica_urls and self.uses_sqlite:
            raise SettingsError(
                "DATABASE_REPLICA_URLS is set but the database is SQLite: replicas are "
                "PostgreSQL streaming replicas of a PostgreSQL DATABASE_URL. Unset it."
            )
        return self

    @property
    def should_auto_migrate(self) -> bool:
        if self.auto_migrate is not None:
            return self.auto_migrate
        return not self.is_production

    @property
    def should_seed_demo(self) -> bool:
        if self.seed_demo is not None:
            return self.seed_demo
        return self.env is Environment.DEVELOPMENT

    @cached_property
    def signing_key(self) -> str:
        """The secret that signs tokens; in development, generated once and kept on disk."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        return key
