"""API keys and tenants: every /v1 route wants a key, and one tenant never sees another's resources.

The routes are read from the app's own OpenAPI schema, so a route added without the checks fails here.
"""

from __future__ import annotations

import io
import os
import re
import sqlite3
import subprocess

import httpx
import numpy as np
import pytest

from models.datasets import raw_arrays
from tests.factories import lenet_spec, training
from tests.live_stack import CLI

NPZ = {"content-type": "application/x-npz"}

# A request that reaches each route's own checks: its body, when it needs one.
BODIES = {
    ("post", "/v1/jobs"): {"json": lenet_spec()},
    ("post", "/v1/ensembles"): {"json": {"members": ["x"]}},
    ("post", "/v1/ensembles/{ensemble_id}/predict"): {"json": {"inputs": np.zeros((1, 1, 8, 8)).tolist()}},
    ("post", "/v1/runs/{run_id}/predict"): {"json": {"inputs": np.zeros((1, 1, 8, 8)).tolist()}},
    ("post", "/v1/datasets"): {"content": b"PK", "headers": NPZ},
}


def v1_operations(stack) -> list[tuple[str, str]]:
    schema = stack.http.get("/openapi.json").json()
    return [
        (method, path)
        for path, operations in schema["paths"].items()
        if path.startswith("/v1/")
        for method in operations
    ]


@pytest.fixture(scope="module")
def tenant_a(stack):
    """Tenant "default" (the stack's own key): a finished job with a run, an ensemble of it, an uploaded
    dataset and a sweep."""
    job = stack.wait_finished(stack.submit(lenet_spec(training=training(epochs=1)))["id"])
    run_id = job["runs"][0]["id"]
    response = stack.http.post("/v1/ensembles", json={"members": [run_id, run_id]})
    assert response.status_code == 201, response.text
    x, y = raw_arrays({"name": "digits"})
    archive = io.BytesIO()
    np.savez(archive, x=x[:100], y=y[:100])
    dataset = stack.http.post("/v1/datasets", params={"name": "a"}, content=archive.getvalue(), headers=NPZ)
    assert dataset.status_code == 201, dataset.text
    sweep = stack.http.post(
        "/v1/sweeps",
        json={"base": lenet_spec(training=training(epochs=1)), "space": {"optimizer.lr": {"choice": [0.1]}}},
    )
    assert sweep.status_code == 201, sweep.text
    ids = {"job_id": job["id"], "run_id": run_id, "ensemble_id": response.json()["id"]}
    return ids | {"dataset_id": dataset.json()["id"], "sweep_id": sweep.json()["id"]}


@pytest.fixture(scope="module")
def tenant_b(stack) -> httpx.Client:
    client = httpx.Client(base_url=stack.url, timeout=30)
    client.headers["Authorization"] = f"Bearer {stack.new_key('other-team')}"
    yield client
    client.close()


def fill(path: str, ids: dict[str, str]) -> str:
    names = re.findall(r"{(\w+)}", path)
    unknown = [name for name in names if name not in ids]
    assert not unknown, f"{path}: add its path parameters {unknown} to this test's ids"
    for name in names:
        path = path.replace(f"{{{name}}}", ids[name])
    return path


def test_every_v1_route_refuses_requests_without_a_valid_key(stack, tenant_a):
    operations = v1_operations(stack)
    assert len(operations) >= 12
    anonymous = httpx.Client(base_url=stack.url, timeout=30)
    wrong = {"Authorization": "Bearer ty_0123456789abcdef_" + "x" * 43}
    for method, path in operations:
        url = fill(path, tenant_a)
        for headers in ({}, wrong, {"Authorization": "Basic dXNlcjpwdw=="}):
            kwargs = dict(BODIES.get((method, path), {}))
            headers = kwargs.pop("headers", {}) | headers
            response = anonymous.request(method, url, headers=headers, **kwargs)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
    anonymous.close()


def test_another_tenants_resources_are_not_found_on_any_route(stack, tenant_a, tenant_b):
    checked = 0
    deletes = {("delete", f"/v1/{kind}/{{{kind[:-1]}_id}}") for kind in ("jobs", "ensembles", "datasets")}
    assert deletes <= set(v1_operations(stack))  # the walk below tries them as tenant B
    for method, path in v1_operations(stack):
        if "{" not in path and path != "/v1/compare":
            continue  # collections: the next test
        url = fill(path, tenant_a)
        both = f"{tenant_a['job_id']},{tenant_a['job_id'][::-1]}"
        params = {"jobs": both} if path == "/v1/compare" else None
        response = tenant_b.request(method, url, params=params, **BODIES.get((method, path), {}))
        assert response.status_code == 404, (method, path, response.text)
        checked += 1
    assert checked >= 9
    # The walk ran tenant B's DELETEs, and nothing of A's went: the owner still reaches each of them.
    for owned in ("jobs/{job_id}", "runs/{run_id}", "ensembles/{ensemble_id}", "datasets/{dataset_id}"):
        assert stack.http.get(fill(f"/v1/{owned}", tenant_a)).status_code == 200, owned


def test_lists_show_only_ones_own(stack, tenant_a, tenant_b):
    own = tenant_b.post("/v1/jobs", json=lenet_spec(name="other-team-job", training=training(epochs=1)))
    assert own.status_code == 202
    listed = [job["id"] for job in tenant_b.get("/v1/jobs", params={"limit": 100}).json()["items"]]
    assert listed == [own.json()["id"]]
    assert tenant_a["job_id"] not in listed
    assert tenant_b.get("/v1/ensembles").json() == {"items": [], "next_cursor": None}
    assert tenant_b.get("/v1/runs").json() == {"items": [], "next_cursor": None}
    assert tenant_b.get("/v1/runs", params={"job_id": tenant_a["job_id"]}).json()["items"] == []
    assert tenant_b.get("/v1/datasets").json()["items"] == []
    assert tenant_b.get("/v1/sweeps").json() == {"items": [], "next_cursor": None}
    own_runs = stack.http.get("/v1/runs", params={"job_id": tenant_a["job_id"]}).json()["items"]
    assert [run["id"] for run in own_runs] == [tenant_a["run_id"]]
    assert own.json()["id"] not in [j["id"] for j in stack.http.get("/v1/jobs").json()["items"]]
    assert stack.http.post(f"/v1/jobs/{own.json()['id']}/cancel").status_code == 404
    # Its own: cancelled, or 409 if it has finished already (fair share may have started it at once).
    assert tenant_b.post(f"/v1/jobs/{own.json()['id']}/cancel").status_code in (202, 409)


def test_another_tenants_sweep_cannot_source_an_ensemble(tenant_a, tenant_b):
    response = tenant_b.post("/v1/ensembles", json={"from_sweep": tenant_a["sweep_id"], "size": 1})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "from_sweep"]
    assert "not found" in response.json()["detail"][0]["msg"]


def test_another_tenants_run_cannot_join_an_ensemble(tenant_a, tenant_b):
    response = tenant_b.post("/v1/ensembles", json={"members": [tenant_a["run_id"]]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "members", 0]
    assert "not found" in response.json()["detail"][0]["msg"]


def test_events_and_downloads_take_the_key_as_access_token(stack, tenant_a):
    key = stack.api_key
    events = httpx.get(f"{stack.url}/v1/jobs/{tenant_a['job_id']}/events", params={"access_token": key})
    assert events.status_code == 200 and "event: done" in events.text
    weights = httpx.get(f"{stack.url}/v1/runs/{tenant_a['run_id']}/weights", params={"access_token": key})
    assert weights.status_code == 200 and len(weights.content) > 1000


def test_keys_are_kept_as_hashes_and_a_revoked_key_is_refused(in_process_api):
    key = in_process_api.new_key("short-lived")
    key_id, secret = key.split("_")[1], key.split("_", 2)[2]
    with sqlite3.connect(in_process_api.database_path) as db:
        stored = db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchall()
        everything = "\n".join(str(row) for row in db.execute("SELECT * FROM api_keys"))
    assert len(stored) == 1 and secret not in everything
    # Revoked as an operator does, with the command, on the app's database.
    env = os.environ | {"DATABASE_URL": in_process_api.settings.sqlalchemy_url}
    subprocess.run([*CLI, "keys", "revoke", key_id], env=env, check=True, capture_output=True)
    refused = httpx.get(f"{in_process_api.url}/v1/jobs", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401


def test_health_docs_and_the_dashboard_need_no_key(in_process_api):
    for path in ("/healthz", "/readyz", "/", "/static/app.js", "/openapi.json"):
        assert httpx.get(f"{in_process_api.url}{path}").status_code == 200, path


def test_another_tenants_rotation_leaves_ones_webhook_secret_alone(stack, tenant_b):
    before = stack.http.get("/v1/webhooks/secret")
    assert before.status_code == 200 and before.json()["current"] is not None
    rotated = tenant_b.post("/v1/webhooks/secret/rotate")
    assert rotated.status_code == 200 and rotated.json()["secret"] != stack.webhook_secrets["default"]
    assert stack.http.get("/v1/webhooks/secret").json() == before.json()
    assert tenant_b.get("/v1/webhooks/secret").json()["previous"] != []
