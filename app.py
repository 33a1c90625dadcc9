"""create_app(settings): the Starlette app, its middleware and routes, and its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from models import db
from runtime import web_runtime
from schema import build_schema
from services import demo
from settings import Settings
from web import health
from web.graphql_view import CoursegenGraphQL
from web.logs import configure_logging
from web.request_id import RequestIdMiddleware

log = logging.getLogger("coursegen")


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    configure_logging()
    schema = build_schema(settings)
    graphql = CoursegenGraphQL(
        schema,
        settings,
        graphql_ide=None if settings.is_production else "graphiql",
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.should_auto_migrate:
            await db.apply_migrations(settings)
        await db.connect(settings)
        if settings.should_seed_demo and await demo.seed_demo_account():
            log.info("seeded the demo account %s", demo.DEMO_EMAIL)
        try:
            async with web_runtime(settings) as runtime:
                app.state.runtime = runtime
                app.state.events, app.state.jobs = runtime.events, runtime.jobs
                app.state.draining = False
                try:
                    yield
                finally:
                    app.state.draining = True
        finally:
            await db.close()

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        Route("/health/live", health.live),
        Route("/health/ready", health.ready),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware)],
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app
