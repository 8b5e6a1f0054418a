"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from api.routers import catalog, ensembles, events, health, jobs, runs


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
    app.include_router(ensembles.router)
    app.include_router(catalog.router)
    return app
