"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from api.observability import install_metrics
from api.routers import catalog, compare, dashboard, ensembles, events, health, jobs, prom, runs, webhooks


def create_app() -> FastAPI:
    app = FastAPI(
        title="trainyard",
        version="0.1.0",
        description="Training as a service for convolutional networks.",
    )
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(runs.router)
    app.include_router(webhooks.router)
    app.include_router(ensembles.router)
    app.include_router(catalog.router)
    app.include_router(compare.router)
    install_metrics(app)
    app.include_router(prom.router)
    dashboard.mount_dashboard(app)
    return app
