"""Who is asking: the tenant of the request's API key, required on every /v1 route.

The key comes as `Authorization: Bearer <key>`, or as `?access_token=<key>` where a browser cannot send
a header (EventSource, download links). Valid keys are remembered for a few seconds, so a dashboard's
polls do not each cost a database read; a revoked key stops working within that time.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from starlette.concurrency import run_in_threadpool

from store import keys
from store.db import new_session

REMEMBER_S = 5.0
_valid: dict[str, tuple[float, str]] = {}


def _lookup(key: str) -> str | None:
    with new_session() as session:
        return keys.tenant_of(session, key)


def _refused(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


async def current_tenant(
    request: Request,
    access_token: Annotated[
        str | None, Query(description="the API key, where a header cannot be sent (EventSource, links)")
    ] = None,
) -> str:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    key = credentials.strip() if scheme.lower() == "bearer" else access_token
    if not key:
        raise _refused("an API key is needed: send Authorization: Bearer <key>")
    remembered = _valid.get(key)
    if remembered is not None and remembered[0] > time.monotonic():
        return remembered[1]
    tenant = await run_in_threadpool(_lookup, key)
    if tenant is None:
        raise _refused("unknown or revoked API key")
    if len(_valid) > 10_000:
        _valid.clear()
    _valid[key] = (time.monotonic() + REMEMBER_S, tenant)
    return tenant


TenantDep = Annotated[str, Depends(current_tenant)]
