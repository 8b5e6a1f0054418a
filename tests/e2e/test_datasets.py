"""Uploaded datasets over HTTP: upload, list, read, train on one; refusals with their reasons; per tenant."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_digits

from tests.factories import lenet_spec, training

NPZ = {"Content-Type": "application/x-npz"}
LIMIT = 8 * 2**20  # TRAINYARD_MAX_UPLOAD_BYTES in tests/live_stack.py


def digits_npz() -> bytes:
    """scikit-learn's digits as a user would send them: N×8×8 uint8 pixels and int labels."""
    digits = load_digits()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=digits.images.astype(np.uint8), y=digits.target)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def uploaded(stack) -> dict:
    body = digits_npz()
    response = stack.http.post("/v1/datasets", params={"name": "my digits"}, content=body, headers=NPZ)
    assert response.status_code == 201, response.text
    return response.json()


def test_an_upload_is_described_listed_and_read_back(stack, uploaded):
    assert uploaded["name"] == "my digits"
    assert (uploaded["n"], uploaded["input_shape"], uploaded["num_classes"]) == (1797, [1, 8, 8], 10)
    assert len(uploaded["sha256"]) == 64 and uploaded["bytes"] == len(digits_npz())
    assert stack.http.get(f"/v1/datasets/{uploaded['id']}").json() == uploaded
    assert stack.http.get("/v1/datasets").json()["items"][0] == uploaded  # newest first


def test_a_job_trains_on_an_upload(stack, uploaded):
    spec = lenet_spec(dataset={"name": "upload", "id": uploaded["id"]}, training=training(epochs=1))
    job = stack.wait_finished(stack.submit(spec)["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["test_acc"] > 0.3  # one epoch on digits: well above chance (0.1)


def test_another_tenants_upload_does_not_exist_for_them(stack, uploaded):
    other = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.new_key('other')}"})
    with other:
        assert other.get(f"/v1/datasets/{uploaded['id']}").status_code == 404
        assert uploaded["id"] not in {d["id"] for d in other.get("/v1/datasets").json()["items"]}
        spec = lenet_spec(dataset={"name": "upload", "id": uploaded["id"]})
        refused = other.post("/v1/jobs", json=spec)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "dataset", "id"]


def test_a_job_naming_an_unknown_upload_is_a_422(stack):
    response = stack.http.post("/v1/jobs", json=lenet_spec(dataset={"name": "upload", "id": "0" * 32}))
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "dataset", "id"] and "no uploaded dataset" in error["msg"]
    assert stack.http.get("/v1/datasets/" + "0" * 32).status_code == 404


def test_a_body_over_the_limit_is_a_413(stack):
    response = stack.http.post("/v1/datasets", params={"name": "big"}, content=bytes(LIMIT + 1), headers=NPZ)
    assert response.status_code == 413


def test_a_chunked_body_over_the_limit_is_a_413(stack):
    chunks = (bytes(2**20) for _ in range(LIMIT // 2**20 + 1))  # no Content-Length: counted while read
    response = stack.http.post("/v1/datasets", params={"name": "big"}, content=chunks, headers=NPZ)
    assert response.status_code == 413


def test_bad_archives_are_422s_with_reasons(stack):
    def upload(body: bytes) -> httpx.Response:
        return stack.http.post("/v1/datasets", params={"name": "bad"}, content=body, headers=NPZ)

    not_zip = upload(b"x,y\n1,2\n")
    assert not_zip.status_code == 422 and "not a .npz" in not_zip.json()["detail"][0]["msg"]
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((20, 8, 8), np.uint8), y=np.arange(20) % 3 * 2)  # classes 1, 3 missing
    missing = upload(buffer.getvalue())
    assert missing.status_code == 422
    [error] = missing.json()["detail"]
    assert error["loc"] == ["body", "y"] and "classes 1, 3 have no samples" in error["msg"]
    wrong_type = stack.http.post("/v1/datasets", params={"name": "bad"}, json={"x": [1]})
    assert wrong_type.status_code == 415
