"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import RedisDep, SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(session: SessionDep, client: RedisDep) -> JSONResponse:
    checks = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:  # the reason stays in the logs; clients get no traceback
        checks["database"] = "unreachable"
    try:
        client.ping()
        checks["redis"] = "ok"
    except Exception:
        checks["redis"] = "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", **checks}, status_code=200 if ready else 503
    )
