"""Who is asking: the tenant of the request's API key, required on every /v1 route.

The key comes as `Authorization: Bearer <key>`, or as `?access_token=<key>` where a browser cannot send
a header (EventSource, download links). Valid keys are remembered for a few seconds, so a dashboard's
polls do not each cost a database read; a revoked key stops working within that time.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from starlette.concurrency import run_in_threadpool

from store import keys

if TYPE_CHECKING:
    from api.resources import ApiResources

REMEMBER_S = 5.0
MAX_REMEMBERED = 10_000


class RememberedKeys:
    """The keys an app has found valid lately, with their tenants: one per app, as each has its database."""

    def __init__(self) -> None:
        self._valid: dict[str, tuple[float, str]] = {}

    def tenant_of(self, key: str) -> str | None:
        remembered = self._valid.get(key)
        return remembered[1] if remembered is not None and remembered[0] > time.monotonic() else None

    def remember(self, key: str, tenant: str) -> None:
        if len(self._valid) > MAX_REMEMBERED:
            self._valid.clear()
        self._valid[key] = (time.monotonic() + REMEMBER_S, tenant)


def _lookup(resources: ApiResources, key: str) -> str | None:
    with resources.sessions() as session:
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
    resources: ApiResources = request.app.state.resources
    if (tenant := resources.keys.tenant_of(key)) is not None:
        return tenant
    tenant = await run_in_threadpool(_lookup, resources, key)
    if tenant is None:
        raise _refused("unknown or revoked API key")
    resources.keys.remember(key, tenant)
    return tenant


TenantDep = Annotated[str, Depends(current_tenant)]
