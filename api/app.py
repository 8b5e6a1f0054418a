"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api.auth import key_holder
from api.body_limit import RouteBodyLimits, route_limits
from api.errors import install_error_handlers
from api.observability import install_metrics
from api.openapi import document_key_refusals, operation_id
from api.resources import ApiResources
from api.routers import (
    catalog,
    compare,
    dashboard,
    datasets,
    ensembles,
    events,
    health,
    jobs,
    prom,
    runs,
    sweeps,
    webhook_secrets,
    webhooks,
)
from store.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API on `settings` (default: read from the environment now, as `trainyard api` serves it).

    Everything the app reads or connects to is built from them here and kept on `app.state.resources`,
    so apps with different settings can live in one process.
    """
    settings = settings or Settings()
    resources = ApiResources.of(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await resources.aclose()

    app = FastAPI(
        title="trainyard",
        version="0.1.0",
        description="Training as a service for convolutional networks.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # One schema per model, so that a JobSpec is one class to a generated client, sent and read back.
        separate_input_output_schemas=False,
    )
    app.state.resources = resources
    app.add_middleware(RouteBodyLimits, default=settings.max_body_bytes, limits=route_limits(settings))
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(runs.router)
    app.include_router(webhooks.router)
    app.include_router(webhook_secrets.router)
    app.include_router(ensembles.router)
    app.include_router(sweeps.router)
    app.include_router(datasets.router)
    app.include_router(catalog.router)
    app.include_router(compare.router)
    install_error_handlers(app)
    install_metrics(app, resources.sessions, resources.redis)
    # A key, but no rate limit: scrapes are few, and a scraper refused would leave gaps in every graph.
    metrics_key = [Depends(key_holder)] if settings.metrics_need_key else []
    app.include_router(prom.router, dependencies=metrics_key)
    dashboard.mount_dashboard(app)
    document_key_refusals(app)
    return app
