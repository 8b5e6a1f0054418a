"""What the OpenAPI schema says beyond what FastAPI derives from the routes: operation ids that read well
in a generated client, and the refusals of the key check (401, 429) on every operation that has it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

# Referenced by every keyed operation (one model in a generated client, not one per operation).
REFUSAL_SCHEMAS: dict[str, Any] = {
    "KeyRefused": {
        "type": "object",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    },
    "TooManyRequests": {
        "type": "object",
        "description": "over the key's request rate (rate_limit_*), or a quota where the route has one "
        "(max_active_jobs); the setting is named in detail",
        "properties": {
            "detail": {
                "type": "object",
                "properties": {"msg": {"type": "string"}, "retry_after_s": {"type": "integer"}},
                "required": ["msg", "retry_after_s"],
            }
        },
        "required": ["detail"],
    },
}


def _answer(description: str, schema: str, header: str, header_description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {header: {"description": header_description, "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


KEY_REFUSED = _answer("no valid API key", "KeyRefused", "WWW-Authenticate", "Bearer")
TOO_MANY = _answer("too many requests", "TooManyRequests", "Retry-After", "seconds to wait before a retry")


def operation_id(route: APIRoute) -> str:
    """`jobs-submit_job` rather than FastAPI's `submit_job_v1_jobs_post`: what a generated client names its
    functions. The tag keeps names unique where two routers use one (each has its `download_weights`)."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def document_key_refusals(app: FastAPI) -> None:
    """Every operation that declares security answers 401, and each under /v1 (rate-limited) 429 too."""
    derive = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = derive()  # FastAPI keeps it as app.openapi_schema: completed here once
            schema.setdefault("components", {}).setdefault("schemas", {}).update(REFUSAL_SCHEMAS)
            for path, operations in schema["paths"].items():
                for operation in operations.values():
                    if operation.get("security"):
                        operation["responses"].setdefault("401", KEY_REFUSED)
                        if path.startswith("/v1/"):
                            operation["responses"].setdefault("429", TOO_MANY)
        return app.openapi_schema

    app.openapi = openapi
