"""Who is asking: the tenant of the request's API key, required on every /v1 route.

The key comes as `Authorization: Bearer <key>`, or as `?access_token=<key>` where a browser cannot send
a header (EventSource, download links). Both are read by fastapi.security's schemes, so the OpenAPI
schema declares them on every operation that depends on `current_tenant` (the Authorize button of /docs,
generated clients that send the key). Valid keys are remembered for a few seconds, so a dashboard's
polls do not each cost a database read; a revoked key stops working within that time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from store import keys

if TYPE_CHECKING:
    from api.resources import ApiResources

REMEMBER_S = 5.0
MAX_REMEMBERED = 10_000

# auto_error=False: a missing key is refused below with this API's own 401 (message, WWW-Authenticate).
bearer_key = HTTPBearer(
    scheme_name="bearerKey",
    bearerFormat="ty_<id>_<secret>",
    description="An API key (`trainyard keys create`), sent as `Authorization: Bearer <key>`.",
    auto_error=False,
)
access_token_key = APIKeyQuery(
    name="access_token",
    scheme_name="accessToken",
    description="The API key as a query parameter, where a header cannot be sent (EventSource, links).",
    auto_error=False,
)


@dataclass(frozen=True)
class KeyHolder:
    key_id: str
    tenant: str


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


async def key_holder(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_key)],
    access_token: Annotated[str | None, Depends(access_token_key)],
) -> KeyHolder:
    """The key's id and tenant, or 401: /metrics asks only this (it is not rate-limited)."""
    key = bearer.credentials if bearer is not None else access_token
    if not key:
        raise _refused("an API key is needed: send Authorization: Bearer <key>")
    resources: ApiResources = request.app.state.resources
    tenant = resources.keys.tenant_of(key)
    if tenant is None:
        tenant = await run_in_threadpool(_lookup, resources, key)
        if tenant is None:
            raise _refused("unknown or revoked API key")
        resources.keys.remember(key, tenant)
    return KeyHolder(key_id=keys.KEY_FORMAT.match(key).group(1), tenant=tenant)


async def current_tenant(request: Request, holder: Annotated[KeyHolder, Depends(key_holder)]) -> str:
    """The tenant of a valid key that is within its request rate (else 401, or 429: api/rate_limit.py)."""
    await request.app.state.resources.rate_limit.admit(holder.key_id)
    return holder.tenant


TenantDep = Annotated[str, Depends(current_tenant)]
