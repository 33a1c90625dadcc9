"""Every Prometheus metric of the service, in one module (importable by every layer).

`/metrics` (web/metrics.py) exposes the default registry. Labels are bounded: operation names
are the client's `operationName` cut to 64 characters (anonymous: "anonymous"), error codes are
our stable codes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Histogram(
    "coursegen_http_request_seconds",
    "HTTP request latency by route and status class.",
    ["route", "method", "status"],
    buckets=_LATENCY,
)
HTTP_IN_FLIGHT = Gauge("coursegen_http_in_flight", "HTTP requests being served.")
GRAPHQL_OPERATIONS = Histogram(
    "coursegen_graphql_operation_seconds",
    "GraphQL operation latency by operation name, type and outcome.",
    ["operation", "type", "outcome"],
    buckets=_LATENCY,
)
GRAPHQL_ERRORS = Counter("coursegen_graphql_errors_total", "GraphQL errors by code.", ["code"])
QUERY_COST = Histogram(
    "coursegen_graphql_query_cost",
    "Requested cost of GraphQL operations.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
LIMIT_REFUSALS = Counter(
    "coursegen_limit_refusals_total",
    "Requests refused by a limit (depth, aliases, tokens, cost, rate, body, timeout, csrf).",
    ["limit"],
)
FAST_PATH = Counter(
    "coursegen_graphql_fast_path_total",
    "GraphQL POSTs by who answered: the fast path (served) or the normal executor (and why).",
    ["outcome"],
)
SQL_STATEMENTS = Histogram(
    "coursegen_sql_statements_per_request",
    "SQL statements sent while serving one GraphQL request.",
    buckets=(0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 100),
)
ACTIVE_SUBSCRIPTIONS = Gauge(
    "coursegen_live_subscriptions", "Open live subscriptions (this process)."
)
ACTIVE_CONNECTIONS = Gauge("coursegen_live_connections", "Open live connections (this process).")
JOB_QUEUE_DEPTH = Gauge(
    "coursegen_job_queue_depth", "Generation jobs waiting in the queue, by tier.", ["queue"]
)
JOB_OUTCOMES = Counter(
    "coursegen_job_outcomes_total", "Generation jobs finished, by outcome.", ["outcome"]
)
MODEL_CALLS = Counter(
    "coursegen_model_calls_total", "Model calls by model and outcome.", ["model", "outcome"]
)
MODEL_TOKENS = Counter(
    "coursegen_model_tokens_total", "Model tokens by model and direction.", ["model", "kind"]
)
MODEL_COST = Counter("coursegen_model_cost_usd_total", "Model spend in USD.", ["model"])
MODEL_LATENCY = Histogram(
    "coursegen_model_call_seconds", "Model call latency.", ["model"], buckets=_LATENCY
)
BREAKER_STATE = Gauge(
    "coursegen_model_breaker_open", "1 while a model endpoint's breaker is open.", ["model"]
)
CACHE_LOOKUPS = Counter(
    "coursegen_cache_lookups_total",
    "Cache and coalescing lookups by cache and result.",
    ["cache", "result"],
)
SYNC_MUTATIONS = Counter(
    "coursegen_sync_mutations_total", "Sync mutation results by status.", ["status"]
)
DB_REPLICA_IN_ROTATION = Gauge(
    "coursegen_db_replica_in_rotation",
    "1 while a read replica serves reads, 0 while it is out of rotation (this process).",
    ["replica"],
)
DB_REPLICA_LAG = Gauge(
    "coursegen_db_replica_lag_seconds",
    "How far a read replica was behind the primary at its last check.",
    ["replica"],
)
DB_READS = Counter(
    "coursegen_db_routed_reads_total",
    "Reads that could go to a replica (queries, sync pulls), by where they went: replica, or "
    "primary and why (none in rotation, the user's own write not yet replayed).",
    ["target"],
)
