"""POST/GET /v1/sweeps without a worker: the first trials queued as jobs, bad spaces refused at their path
with nothing queued, pages, tenants, cancel and replayed retries."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.factories import lenet_spec, training

LRS = [0.1, 0.03, 0.01]


def sweep_body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "lr search",
        "base": lenet_spec(training=training(epochs=3)),
        "space": {"optimizer.lr": {"choice": LRS}},
        "method": "grid",
        "parallelism": 2,
    } | fields


def create(api, **fields: Any) -> dict[str, Any]:
    response = api.http.post("/v1/sweeps", json=sweep_body(**fields))
    assert response.status_code == 201, response.text
    return response.json()


def test_a_sweep_queues_parallelism_trials_each_a_job_of_kind_trial(in_process_api):
    api = in_process_api
    before = api.queued_messages()
    sweep = create(api)
    assert sweep["status"] == "running" and sweep["max_trials"] == 3  # the grid's size
    assert [trial["status"] for trial in sweep["trials"]] == ["queued", "queued"]
    assert api.queued_messages() == before + 2
    for trial in sweep["trials"]:
        job = api.job(trial["job_id"])
        assert job["kind"] == "trial"
        assert job["spec"]["optimizer"]["lr"] == trial["params"]["optimizer.lr"]
        assert job["name"].startswith("lr search")
    read = api.http.get(f"/v1/sweeps/{sweep['id']}").json()
    assert read["trials"] == sweep["trials"] and read["best"] is None and read["trial_epochs"] == 0


def space(path: str, domain: dict[str, Any], method: str = "grid") -> dict[str, Any]:
    return {"space": {path: domain}, "method": method}


BAD_SPACES = [
    ("unknown path", space("optimizr.lr", {"uniform": [0.01, 0.1]}, "random"), "optimizr.lr"),
    ("empty choice", space("optimizer.lr", {"choice": []}), "optimizer.lr"),
    ("low above high", space("optimizer.lr", {"uniform": [0.1, 0.01]}, "random"), "optimizer.lr"),
    ("all points invalid", space("regularization.dropout", {"choice": [1.5, 2.0]}), "regularization.dropout"),
]


@pytest.mark.parametrize("fields, path", [c[1:] for c in BAD_SPACES], ids=[c[0] for c in BAD_SPACES])
def test_a_bad_space_is_422_at_its_path_and_nothing_is_stored_or_queued(in_process_api, fields, path):
    api = in_process_api
    before, listed = api.queued_messages(), len(api.http.get("/v1/sweeps").json()["items"])
    response = api.http.post("/v1/sweeps", json=sweep_body(**fields))
    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in response.json()["detail"]]
    assert any(loc[:3] == ["body", "space", path] for loc in locs), locs
    assert api.queued_messages() == before
    assert len(api.http.get("/v1/sweeps").json()["items"]) == listed


def test_a_bad_base_is_422_at_its_field(in_process_api):
    body = sweep_body(base=lenet_spec(training={"epochs": 0}))
    response = in_process_api.http.post("/v1/sweeps", json=body)
    assert response.status_code == 422
    assert ["body", "base", "training", "epochs"] in [e["loc"] for e in response.json()["detail"]]


def test_sweeps_are_paged_newest_first_and_each_tenant_sees_its_own(in_process_api):
    api = in_process_api
    ids = [create(api, name=f"paged {n}")["id"] for n in range(3)]
    first = api.http.get("/v1/sweeps", params={"limit": 2}).json()
    second = api.http.get("/v1/sweeps", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    listed = [sweep["id"] for sweep in first["items"] + second["items"]]
    assert listed[:3] == ids[::-1]
    with api.client(api.new_key("another-tenant")) as other:
        assert other.get("/v1/sweeps").json()["items"] == []
        assert other.get(f"/v1/sweeps/{ids[0]}").status_code == 404
        assert other.post(f"/v1/sweeps/{ids[0]}/cancel").status_code == 404


def test_cancelling_a_sweep_cancels_its_queued_trials(in_process_api):
    api = in_process_api
    sweep = create(api)
    cancelled = api.http.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert [trial["status"] for trial in cancelled.json()["trials"]] == ["cancelled", "cancelled"]
    assert api.http.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 409


def test_a_retried_create_with_its_idempotency_key_makes_one_sweep(in_process_api):
    api = in_process_api
    headers, before = {"Idempotency-Key": str(uuid.uuid4())}, api.queued_messages()
    first = api.http.post("/v1/sweeps", json=sweep_body(), headers=headers)
    again = api.http.post("/v1/sweeps", json=sweep_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert api.queued_messages() == before + 2
