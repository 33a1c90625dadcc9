"""create_app(settings): the Starlette app, its middleware and routes, and its lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send

import keyspace
from fastpath.endpoint import FastPath
from models import db
from replicas import routing as replicas
from runtime import web_runtime
from schema import build_schema, observe
from services import demo, passwords, scopes
from settings import Settings
from subscriptions.live import LiveProgress
from sync import poke as sync_poke
from web import health, metrics, persisted_queries, sse, sync_routes, tracing
from web.access_log import AccessLogMiddleware
from web.client_routes import WebClient
from web.compression import CompressionMiddleware
from web.csrf import CSRFMiddleware
from web.graphql_sse import GraphQLSSE
from web.graphql_view import CoursegenGraphQL
from web.limits import BodyLimitMiddleware, TimeoutMiddleware, WebSocketMessageLimitMiddleware
from web.logs import configure_logging
from web.outages import OutageMiddleware
from web.request_id import RequestIdMiddleware

log = logging.getLogger("coursegen")


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    configure_logging()
    passwords.use_profile(settings.argon2_profile)
    keyspace.use(settings.redis_namespace)
    fast_path = FastPath(settings)
    tracing.configure(settings)
    observe.configure_labels(
        settings.metrics_operation_names, settings.metrics_max_operation_labels
    )
    if settings.metrics_port:
        _serve_metrics_privately(settings.metrics_port)
    # Read and checked now: a broken manifest stops the start, not the first request.
    trusted = persisted_queries.load_trusted(settings)
    extra = [*tracing.schema_extensions(settings), *persisted_queries.schema_extensions(trusted)]
    schema = build_schema(settings, fast_path, extra)
    graphql = CoursegenGraphQL(
        schema,
        settings,
        trusted=trusted,
        graphql_ide="graphiql" if settings.ide_enabled else None,
        allow_queries_via_get=settings.graphql_get_queries,
        # Cross-origin WebSocket handshakes only from these (no Origin / same origin: allowed).
        allowed_origins=settings.websocket_allowed_origins,
    )
    graphql_sse = GraphQLSSE(schema, settings)
    graphql_endpoint = _GraphQLEndpoint(graphql, graphql_sse, fast_path)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.should_auto_migrate:
            await db.apply_migrations(settings)
        await db.connect(settings)
        if settings.should_seed_demo and await demo.seed_demo_account():
            log.info("seeded the demo account %s", demo.DEMO_EMAIL)
        # A GraphQL response allocates tens of thousands of short-lived objects; with the default
        # thresholds the collector ran 40-55 % of a dashboard request's CPU (bench/README.md).
        # Long-lived startup objects are frozen out of its scans, and young ones collected less.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        try:
            async with web_runtime(settings) as runtime:
                app.state.runtime = runtime
                app.state.events, app.state.jobs = runtime.events, runtime.jobs
                app.state.draining = False
                live = app.state.live = LiveProgress.build(settings, runtime.events)
                await live.start()
                # Every commit that stamps sync scopes pokes their users (syncPoke).
                stop_poking = scopes.on_commit(sync_poke.listener(live.broker))
                restore_signals = _drain_on_sigterm(app, live, settings.live_drain_seconds)
                refresher = asyncio.create_task(
                    metrics.keep_refreshed(app.state, settings.metrics_refresh_seconds)
                )
                try:
                    await replicas.start(settings, runtime.redis)
                    yield
                finally:
                    await replicas.stop()
                    refresher.cancel()
                    app.state.draining = True
                    restore_signals()
                    stop_poking()
                    await live.stop()
        finally:
            await db.close()

    routes = [
        Route("/graphql", graphql_endpoint, methods=["GET", "POST", "PUT", "DELETE"]),
        WebSocketRoute("/graphql", graphql),
        Route("/graphql/stream", graphql_sse, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/events/jobs/{job_id}", sse.job_events, methods=["GET"]),
        Route("/health/live", health.live),
        Route("/health/ready", health.ready),
        *sync_routes.routes,
        Route("/metrics", metrics.endpoint),
        *WebClient().routes(),  # the web client: `/` and its hashed `/assets/*`
    ]
    app = Starlette(routes=routes, middleware=_middleware(settings), lifespan=lifespan)
    app.state.settings = settings
    app.state.fast_path = fast_path
    return app


_private_metrics_ports: set[int] = set()


def _serve_metrics_privately(port: int) -> None:
    """prometheus_client's own HTTP server, on a thread, once per port and process. It shows
    the gauges as the background refresher last set them (web/metrics.py)."""
    if port not in _private_metrics_ports:
        from prometheus_client import start_http_server

        start_http_server(port)
        _private_metrics_ports.add(port)


def _middleware(settings: Settings) -> list[Middleware]:
    """Outermost first: request id, access log, CORS, outages, compression, CSRF, body size,
    timeout."""
    stack = [Middleware(RequestIdMiddleware), Middleware(AccessLogMiddleware)]
    if settings.tracing:  # inside the request id, which its spans carry
        stack.insert(1, Middleware(tracing.TracingMiddleware))
    if settings.cors_allowed_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_allowed_origins,
                allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                allow_headers=[
                    "authorization",
                    "content-type",
                    "apollo-require-preflight",
                    "x-apollo-operation-name",
                    "x-requested-with",
                    "x-request-id",
                    "last-event-id",
                ],
                expose_headers=["x-request-id", "retry-after"],
                max_age=600,
            )
        )
    # Inside CORS, so a browser can read the 503 of an outage.
    stack.append(Middleware(OutageMiddleware))
    stack.append(Middleware(CompressionMiddleware, minimum_size=settings.compression_min_bytes))
    if settings.csrf_prevention:
        stack.append(Middleware(CSRFMiddleware))
    stack.append(Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes))
    stack.append(
        Middleware(WebSocketMessageLimitMiddleware, max_bytes=settings.ws_max_message_bytes)
    )
    stack.append(Middleware(TimeoutMiddleware, seconds=settings.request_timeout_seconds))
    return stack


class _GraphQLEndpoint:
    """`/graphql`: graphql-sse requests (PUT, DELETE, event streams) to the graphql-sse app;
    JSON POSTs of learned queries to the fast path (fastpath/), which hands back whatever it
    does not answer; everything else to Strawberry's view, unchanged."""

    def __init__(
        self, graphql: CoursegenGraphQL, graphql_sse: GraphQLSSE, fast_path: FastPath
    ) -> None:
        self.graphql = graphql
        self.graphql_sse = graphql_sse
        self.fast_path = fast_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if GraphQLSSE.handles(scope):
            await self.graphql_sse(scope, receive, send)
            return
        if self.fast_path.enabled and scope["method"] == "POST" and _is_json(scope):
            request = Request(scope, receive)
            body = await request.body()
            response = await self.fast_path.handle(request, body, self.graphql.persisted)
            if response is not None:
                await response(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.graphql(scope, receive, send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the already-read body to the next app, then the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _drain_on_sigterm(
    app: Starlette, live: LiveProgress, drain_seconds: float
) -> Callable[[], None]:
    """On SIGTERM under uvicorn: readiness turns false, new live connections are refused, open
    ones are closed at once (WebSockets with 1012, SSE streams end) so clients reconnect to
    another process; `drain_seconds` later uvicorn's own shutdown runs. Returns the undo."""
    previous = signal.getsignal(signal.SIGTERM)
    under_uvicorn = hasattr(getattr(previous, "__self__", None), "should_exit")
    if threading.current_thread() is not threading.main_thread() or not under_uvicorn:
        return lambda: None
    loop = asyncio.get_running_loop()
    forward: Any = previous

    def begin() -> None:
        if app.state.draining:  # a second SIGTERM: stop now
            forward(signal.SIGTERM, None)
            return
        log.info("SIGTERM: draining live connections for %.1f s", drain_seconds)
        app.state.draining = True
        live.drain()
        loop.call_later(drain_seconds, forward, signal.SIGTERM, None)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(begin)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    return restore
