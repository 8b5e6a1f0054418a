"""DELETE of jobs, ensembles and datasets, and run predictions' refusals, on the API without a worker:
what is queued stays queued, so what is in use can be shown refused."""

from __future__ import annotations

import io

import numpy as np
import pytest

from models.datasets import raw_arrays
from tests.factories import lenet_spec, training

NPZ = {"content-type": "application/x-npz"}


def upload(api) -> dict:
    x, y = raw_arrays({"name": "digits"})
    archive = io.BytesIO()
    np.savez(archive, x=x[:200], y=y[:200])
    response = api.http.post("/v1/datasets", params={"name": "d"}, content=archive.getvalue(), headers=NPZ)
    assert response.status_code == 201, response.text
    return response.json()


def cancel(api, job_id: str) -> None:
    assert api.http.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    assert api.job(job_id)["status"] == "cancelled"


def test_a_queued_job_is_refused_until_cancelled_then_deleted(in_process_api):
    api = in_process_api
    job = api.submit(lenet_spec(training=training(epochs=1)))
    refused = api.http.delete(f"/v1/jobs/{job['id']}")
    assert refused.status_code == 409
    assert "cancel it first" in refused.json()["detail"]
    assert api.job(job["id"])["status"] == "queued"

    cancel(api, job["id"])
    assert api.http.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert api.http.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert job["id"] not in [j["id"] for j in api.http.get("/v1/jobs", params={"limit": 100}).json()["items"]]
    assert api.http.delete(f"/v1/jobs/{job['id']}").status_code == 404  # gone: a second delete finds nothing


def test_an_ensemble_jobs_member_is_deleted_only_with_its_ensemble_job(in_process_api):
    api = in_process_api
    spec = lenet_spec(training=training(epochs=1))
    spec["ensemble"] = {"members": 2}
    job = api.submit(spec)
    member_ids = [member["id"] for member in api.job(job["id"])["members"]]
    assert len(member_ids) == 2
    cancel(api, job["id"])

    refused = api.http.delete(f"/v1/jobs/{member_ids[1]}")
    assert refused.status_code == 409
    assert f"ensemble job {job['id']}" in refused.json()["detail"]
    assert api.http.get(f"/v1/jobs/{member_ids[1]}").status_code == 200

    assert api.http.delete(f"/v1/jobs/{job['id']}").status_code == 204
    for gone in (job["id"], *member_ids):
        assert api.http.get(f"/v1/jobs/{gone}").status_code == 404


def test_a_dataset_is_refused_while_a_queued_job_trains_on_it_then_deleted_with_its_file(in_process_api):
    api = in_process_api
    dataset = upload(api)
    stored = api.settings.artifacts_dir / "uploads" / f"{dataset['id']}.npz"  # in the artifact store
    assert stored.is_file()
    job = api.submit(lenet_spec(dataset={"name": "upload", "id": dataset["id"]}, training=training(epochs=1)))
    copy = api.settings.data_dir / "uploads" / f"{dataset['id']}.npz"  # what vetting the job read
    assert copy.is_file()

    refused = api.http.delete(f"/v1/datasets/{dataset['id']}")
    assert refused.status_code == 409
    assert job["id"] in refused.json()["detail"]
    assert api.http.get(f"/v1/datasets/{dataset['id']}").status_code == 200 and stored.is_file()

    cancel(api, job["id"])
    assert api.http.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
    assert api.http.get(f"/v1/datasets/{dataset['id']}").status_code == 404
    assert not stored.exists() and not copy.exists()
    # The finished job that trained on it stays; a new one naming it is refused as for any unknown upload.
    assert api.job(job["id"])["status"] == "cancelled"
    again = api.http.post("/v1/jobs", json=lenet_spec(dataset={"name": "upload", "id": dataset["id"]}))
    assert again.status_code == 422



def test_a_dataset_in_use_by_an_ensemble_job_names_that_job_not_its_members(in_process_api):
    api = in_process_api
    dataset = upload(api)
    spec = lenet_spec(dataset={"name": "upload", "id": dataset["id"]}, training=training(epochs=1))
    spec["ensemble"] = {"members": 2}
    job = api.submit(spec)

    refused = api.http.delete(f"/v1/datasets/{dataset['id']}")
    assert refused.status_code == 409
    assert refused.json()["detail"].count(job["id"]) == 1
    assert len(job["members"]) == 2
    assert not any(member["id"] in refused.json()["detail"] for member in job["members"])
    cancel(api, job["id"])
    assert api.http.delete(f"/v1/datasets/{dataset['id']}").status_code == 204


def test_another_tenant_deletes_nothing(in_process_api):
    api = in_process_api
    dataset = upload(api)
    job = api.submit(lenet_spec(training=training(epochs=1)))
    cancel(api, job["id"])
    with api.client(api.new_key("intruder")) as intruder:
        assert intruder.delete(f"/v1/jobs/{job['id']}").status_code == 404
        assert intruder.delete(f"/v1/datasets/{dataset['id']}").status_code == 404
        assert intruder.delete("/v1/ensembles/0123456789abcdef0123456789abcdef").status_code == 404
    assert api.http.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert api.http.get(f"/v1/datasets/{dataset['id']}").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/v1/runs/{id}/predict"), ("get", "/v1/runs/{id}/export"), ("delete", "/v1/ensembles/{id}")],
)
def test_unknown_runs_and_ensembles_are_404s(in_process_api, method, path):
    body = {"json": {"inputs": np.zeros((1, 1, 8, 8)).tolist()}} if method == "post" else {}
    response = in_process_api.http.request(method, path.format(id="f" * 32), **body)
    assert response.status_code == 404, response.text


def test_an_export_format_other_than_onnx_is_a_422_on_the_query(in_process_api):
    response = in_process_api.http.get(f"/v1/runs/{'f' * 32}/export", params={"format": "pickle"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "format"]


def test_a_run_prediction_checks_its_body_before_looking_for_the_run(in_process_api):
    response = in_process_api.http.post(f"/v1/runs/{'f' * 32}/predict", json={"inputs": [1, 2, 3]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "inputs"]
