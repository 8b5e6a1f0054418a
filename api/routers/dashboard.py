"""The dashboard: one static page at `/` and its ES modules and stylesheet under `/static`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def read_dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


def mount_dashboard(app: FastAPI) -> None:
    """Serve the page and its files; StaticFiles answers with ETags, so reloads revalidate cheaply."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
