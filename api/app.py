"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from api.auth import current_tenant
from api.body_limit import RouteBodyLimits, route_limits
from api.errors import install_error_handlers
from api.observability import install_metrics
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
    webhooks,
)
from store.settings import get_settings


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="trainyard",
        version="0.1.0",
        description="Training as a service for convolutional networks.",
    )
    app.add_middleware(RouteBodyLimits, default=settings.max_body_bytes, limits=route_limits(settings))
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(runs.router)
    app.include_router(webhooks.router)
    app.include_router(ensembles.router)
    app.include_router(datasets.router)
    app.include_router(catalog.router)
    app.include_router(compare.router)
    install_error_handlers(app)
    install_metrics(app)
    metrics_key = [Depends(current_tenant)] if settings.metrics_need_key else []
    app.include_router(prom.router, dependencies=metrics_key)
    dashboard.mount_dashboard(app)
    return app
