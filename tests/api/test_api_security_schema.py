"""The schema says how to authenticate: every /v1 operation, and /metrics when it wants a key."""

from __future__ import annotations

import httpx
import pytest

from tests.in_process_api import InProcessApi

BEARER = "bearerKey"


@pytest.fixture(scope="module")
def keyed_metrics(start_in_process_api) -> InProcessApi:
    return start_in_process_api(metrics_need_key=True)


def operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def test_every_v1_operation_declares_bearer_security(in_process_api: InProcessApi):
    schema = httpx.get(f"{in_process_api.url}/openapi.json").json()
    assert schema["components"]["securitySchemes"][BEARER] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "ty_<id>_<secret>",
        "description": "",
    }
    v1 = [(method, path, op) for method, path, op in operations(schema) if path.startswith("/v1/")]
    assert len(v1) >= 12
    missing = [(method, path) for method, path, op in v1 if {BEARER: []} not in op.get("security", [])]
    assert not missing, f"operations without bearer security: {missing}"
    # And they say how the key check refuses: 401, and 429 with Retry-After past the key's request rate.
    undocumented = [(method, path) for method, path, op in v1 if not {"401", "429"} <= set(op["responses"])]
    assert not undocumented, f"operations without their 401 and 429: {undocumented}"
    assert "Retry-After" in v1[0][2]["responses"]["429"]["headers"]
    # access_token is a scheme, not a parameter: a generated client does not ask for it on every call.
    assert all("access_token" not in [p["name"] for p in op.get("parameters", [])] for _, _, op in v1)
    keyless = {path: op for method, path, op in operations(schema) if not path.startswith("/v1/")}
    assert "security" not in keyless["/healthz"] and "security" not in keyless["/metrics"]


def test_metrics_declare_security_when_they_want_a_key(keyed_metrics: InProcessApi):
    schema = keyed_metrics.http.get("/openapi.json").json()
    assert {BEARER: []} in schema["paths"]["/metrics"]["get"]["security"]


def test_the_key_works_as_a_header_or_as_access_token_and_is_refused_as_before(in_process_api):
    url = f"{in_process_api.url}/v1/catalog"
    assert httpx.get(url, headers={"Authorization": f"bearer {in_process_api.api_key}"}).status_code == 200
    assert httpx.get(url, params={"access_token": in_process_api.api_key}).status_code == 200
    for headers, message in (
        ({}, "an API key is needed: send Authorization: Bearer <key>"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "an API key is needed: send Authorization: Bearer <key>"),
        ({"Authorization": "Bearer ty_0123456789abcdef_" + "x" * 43}, "unknown or revoked API key"),
        ({"Authorization": "Bearer not-a-key"}, "unknown or revoked API key"),
    ):
        refused = httpx.get(url, headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json() == {"detail": message}
