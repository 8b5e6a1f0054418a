"""Request body limits: one for every route, and larger (or smaller) ones for the routes that need them.

The counting is Starlette's RequestBodyLimitMiddleware: a declared Content-Length over the limit is a 413
before a byte of the body is read; a body without one (chunked) is counted while it is read and cut off
with a 413 as soon as it passes the limit. FastAPI's own `FastAPI(max_body_size=...)` (0.165) uses the
same class but copies the app's limit into every route, where only a route's decorator can change it;
routes owned by others (predict, dataset uploads) would have to be edited. Choosing the limit here, by
path, keeps one table that says which routes take more than the default.
"""

from __future__ import annotations

import re

from fastapi import HTTPException, Request, status
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from store.settings import Settings

# Path pattern -> the setting that limits its bodies. A setting not (yet) defined leaves the default.
ROUTE_LIMITS: tuple[tuple[str, str], ...] = (
    (r"^/v1/ensembles/[^/]+/predict$", "max_predict_bytes"),
    (r"^/v1/datasets/?$", "max_upload_bytes"),
)


def route_limits(settings: Settings) -> list[tuple[re.Pattern[str], int]]:
    """The table with each setting's value, for the settings that exist."""
    return [
        (re.compile(pattern), getattr(settings, name))
        for pattern, name in ROUTE_LIMITS
        if isinstance(getattr(settings, name, None), int)
    ]


class RouteBodyLimits:
    """Pure ASGI: every HTTP request runs under the first matching route's limit, else the default."""

    def __init__(self, app: ASGIApp, default: int, limits: list[tuple[re.Pattern[str], int]]) -> None:
        self.default = RequestBodyLimitMiddleware(app, default)
        self.limited = [(pattern, RequestBodyLimitMiddleware(app, limit)) for pattern, limit in limits]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limited_app = self.default
        if scope["type"] == "http":
            path = scope["path"]
            limited_app = next((app for pattern, app in self.limited if pattern.match(path)), self.default)
        await limited_app(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, for a route that parses it itself: a 413 that names the limit as soon as the body
    passes it, declared or chunked (the middleware would answer a bare "Content Too Large")."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"the body is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"the body is over {limit} bytes")
        body += chunk
    return bytes(body)
