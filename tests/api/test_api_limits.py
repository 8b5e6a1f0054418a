"""Limits and hostile bodies: refused before anything is stored or queued (the app in-process, no worker)."""

from __future__ import annotations

import io
import json
import socket

import httpx
import numpy as np
import pytest

from models.datasets import raw_arrays
from tests.factories import lenet_spec, training
from tests.in_process_api import InProcessApi
from tests.live_stack import TEST_SETTINGS

JSON = {"Content-Type": "application/json"}
BODY_LIMIT = 64 * 1024
PREDICT_LIMIT = 512 * 1024
LIMITS = {
    "TRAINYARD_MAX_EPOCHS": "5",
    "TRAINYARD_MAX_BATCH_SIZE": "128",
    "TRAINYARD_MAX_MEMBERS": "5",
    "TRAINYARD_MAX_PARAMS": "1000000",
    "TRAINYARD_MAX_FLOPS": "100000000",
    "TRAINYARD_MAX_ACTIVE_JOBS": "4",
    "TRAINYARD_MAX_BODY_BYTES": str(BODY_LIMIT),
    "TRAINYARD_MAX_PREDICT_BYTES": str(PREDICT_LIMIT),
    "TRAINYARD_MAX_PAGE_SIZE": "10",
    # 1 MiB: digits (1797 uint8 8x8 images, cached and split: 230 kB) fits at any input size; 1000 synthetic
    # 3x16x16 (1.5 MB) do not.
    "TRAINYARD_MAX_DATASET_BYTES": str(2**20),
}
# lenet5 on digits: 61,706 parameters, 0.8 MFLOPs per sample. On 8x8 digits: 1.2 M parameters, 2.4 MFLOPs.
WIDE_MLP = {
    "layers": [
        {"type": "flatten"},
        {"type": "linear", "out_features": 16384},
        {"type": "linear", "out_features": 10},
    ]
}
# On digits resized to 32x32: 0.3 M parameters, 0.12 GFLOPs.
HEAVY_CONVS = {
    "layers": [
        {"type": "conv", "out_channels": 64, "kernel_size": 3, "padding": 1},
        {"type": "conv", "out_channels": 96, "kernel_size": 3, "padding": 1},
        {"type": "maxpool", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "linear", "out_features": 10},
    ]
}


@pytest.fixture(scope="module")
def limited(start_in_process_api) -> InProcessApi:
    """An API with small limits and no worker: what it queues stays queued, where it can be counted."""
    return start_in_process_api(TEST_SETTINGS | LIMITS)


def tenant_client(stack: InProcessApi, tenant: str) -> httpx.Client:
    key = stack.new_key(tenant)
    return httpx.Client(base_url=stack.url, timeout=30, headers={"Authorization": f"Bearer {key}"})


def job_count(client: httpx.Client) -> int:
    return len(client.get("/v1/jobs", params={"limit": 10}).json()["items"])


def assert_refused_at(response: httpx.Response, loc: list, setting: str | None = None) -> None:
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    matching = [e for e in errors if e["loc"] == loc]
    assert matching, errors
    if setting:
        assert setting in matching[0]["msg"] and matching[0]["ctx"]["setting"] == setting


@pytest.mark.parametrize(
    ("overrides", "loc", "setting"),
    [
        ({"training": training(epochs=6)}, ["body", "training", "epochs"], "max_epochs"),
        ({"training": training(batch_size=129)}, ["body", "training", "batch_size"], "max_batch_size"),
        ({"ensemble": {"members": 6}}, ["body", "ensemble", "members"], "max_members"),
        ({"model": WIDE_MLP}, ["body", "model"], "max_params"),
        (
            {"model": HEAVY_CONVS, "dataset": {"name": "digits", "image_size": 32}},
            ["body", "model"],
            "max_flops",
        ),
        (
            {"dataset": {"name": "synthetic", "samples": 1000, "size": 16, "channels": 3}},
            ["body", "dataset"],
            "max_dataset_bytes",
        ),
    ],
    ids=["epochs", "batch_size", "members", "params", "flops", "dataset_bytes"],
)
def test_a_job_over_a_limit_is_a_422_at_its_field_and_nothing_is_queued(limited, overrides, loc, setting):
    queued, jobs = limited.queued_messages(), job_count(limited.http)
    response = limited.http.post("/v1/jobs", json=lenet_spec(**overrides))
    assert_refused_at(response, loc, setting)
    assert (limited.queued_messages(), job_count(limited.http)) == (queued, jobs)


def test_a_job_at_every_limit_is_accepted_even_with_more_members_than_active_jobs(limited):
    client = tenant_client(limited, "at-the-limits")
    # 5 members > max_active_jobs (4): admitted because the tenant has nothing else queued or running.
    spec = lenet_spec(training=training(epochs=5, batch_size=128), ensemble={"members": 5})
    assert client.post("/v1/jobs", json=spec).status_code == 202
    assert client.post("/v1/jobs", json=lenet_spec()).status_code == 429


def test_a_million_images_at_224_px_are_refused_by_default_naming_bytes_limit_and_setting(in_process_api):
    queued, jobs = in_process_api.queued_messages(), job_count(in_process_api.http)
    dataset = {"name": "synthetic", "channels": 3, "size": 224, "samples": 1_000_000}
    response = in_process_api.http.post(
        "/v1/jobs", json=lenet_spec(dataset=dataset, model={"arch": "alexnet"})
    )
    assert_refused_at(response, ["body", "dataset"], "max_dataset_bytes")
    (error,) = [e for e in response.json()["detail"] if e["loc"] == ["body", "dataset"]]
    # uint8 at 224 px, cached and split, for each of the million images: 301 GB.
    assert "301,056,000,000" in error["msg"] and "8,589,934,592" in error["msg"]
    assert (error["input"], error["ctx"]["le"]) == (301_056_000_000, 8 * 2**30)
    assert (in_process_api.queued_messages(), job_count(in_process_api.http)) == (queued, jobs)
    # 20,000 of them for AlexNet at 224 px: 6 GB, within the default 8 GiB (as float32 inputs: 12 GB).
    smaller = dataset | {"samples": 20_000}
    accepted = in_process_api.http.post(
        "/v1/jobs", json=lenet_spec(dataset=smaller, model={"arch": "alexnet"})
    )
    assert accepted.status_code == 202, accepted.text


def test_an_uploaded_dataset_is_measured_from_its_header_as_stored_whatever_the_input_size(limited):
    x, y = raw_arrays({"name": "digits"})
    x, y = np.concatenate([x, x]), np.concatenate([y, y])  # 3594 images of 8x8

    def upload(images: np.ndarray) -> dict:
        archive = io.BytesIO()
        np.savez(archive, x=images, y=y)
        headers = {"content-type": "application/x-npz"}
        stored = limited.http.post(
            "/v1/datasets", params={"name": "d"}, content=archive.getvalue(), headers=headers
        )
        assert stored.status_code == 201, stored.text
        return {"name": "upload", "id": stored.json()["id"]}

    as_float32, as_uint8 = upload(x.astype(np.float32)), upload(x)
    queued, jobs = limited.queued_messages(), job_count(limited.http)
    refused = limited.http.post("/v1/jobs", json=lenet_spec(dataset=as_float32))  # 1.8 MB held
    assert_refused_at(refused, ["body", "dataset"], "max_dataset_bytes")
    assert (limited.queued_messages(), job_count(limited.http)) == (queued, jobs)
    # The same images as uint8, 0.5 MB held, even made 64x64 inputs (a batch at a time).
    accepted = limited.http.post("/v1/jobs", json=lenet_spec(dataset=as_uint8 | {"image_size": 64}))
    assert accepted.status_code == 202, accepted.text


def test_an_ensemble_of_more_runs_than_max_members_is_a_422_before_the_runs_are_looked_up(limited):
    response = limited.http.post("/v1/ensembles", json={"members": ["a", "b", "c", "d", "e", "f"]})
    assert_refused_at(response, ["body", "members"], "max_members")


def test_active_jobs_per_tenant_are_capped_with_429_and_retry_after(limited):
    client, other = tenant_client(limited, "busy"), tenant_client(limited, "quiet")
    submitted = [client.post("/v1/jobs", json=lenet_spec()) for _ in range(2)]
    # An ensemble job costs one slot per member: 2 + 2 = 4, the limit.
    submitted.append(client.post("/v1/jobs", json=lenet_spec(ensemble={"members": 2})))
    assert [r.status_code for r in submitted] == [202, 202, 202]
    queued = limited.queued_messages()

    refused = client.post("/v1/jobs", json=lenet_spec())
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    detail = refused.json()["detail"]
    assert (detail["active"], detail["requested"], detail["limit"]) == (4, 1, 4)
    assert limited.queued_messages() == queued and job_count(client) == 3

    # The cap is per tenant, and a cancelled job frees its slot.
    assert other.post("/v1/jobs", json=lenet_spec()).status_code == 202
    assert client.post(f"/v1/jobs/{submitted[0].json()['id']}/cancel").status_code == 202
    assert client.post("/v1/jobs", json=lenet_spec()).status_code == 202
    assert client.post("/v1/jobs", json=lenet_spec(ensemble={"members": 2})).status_code == 429


@pytest.mark.parametrize("field", ["owner", "status", "tenant", "id", "attempts"])
def test_server_owned_fields_in_a_spec_are_refused_at_the_field(limited, field):
    queued = limited.queued_messages()
    top = limited.http.post("/v1/jobs", json=lenet_spec() | {field: "someone-else"})
    assert_refused_at(top, ["body", field])
    for part in ("training", "model", "dataset", "optimizer", "ensemble"):
        spec = lenet_spec()
        spec[part] = spec.get(part, {}) | {field: "someone-else"}
        nested = limited.http.post("/v1/jobs", json=spec)
        assert nested.status_code == 422, nested.text
        assert any(e["loc"][:2] == ["body", part] and e["loc"][-1] == field for e in nested.json()["detail"])
    assert limited.queued_messages() == queued


@pytest.mark.parametrize("field", ["owner", "status", "tenant", "id"])
def test_server_owned_fields_in_an_ensemble_body_are_refused(limited, field):
    top = limited.http.post("/v1/ensembles", json={"members": ["a"], field: "someone-else"})
    assert_refused_at(top, ["body", field])
    nested = limited.http.post("/v1/ensembles", json={"members": [{"run_id": "a", field: "x"}]})
    assert nested.status_code == 422, nested.text
    errors = nested.json()["detail"]
    assert any(e["loc"][:3] == ["body", "members", 0] and e["loc"][-1] == field for e in errors), errors


def padded_spec(size: int) -> bytes:
    """A JSON job padded past `size` bytes (the padding alone would be a 422, were it read)."""
    return json.dumps(lenet_spec() | {"padding": "x" * size}).encode()


def test_a_body_over_the_limit_is_a_413_with_content_length_or_chunked(limited):
    queued = limited.queued_messages()
    body = padded_spec(2 * BODY_LIMIT)
    declared = limited.http.post("/v1/jobs", content=body, headers=JSON)
    assert declared.status_code == 413, declared.text
    chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))
    chunked = limited.http.post("/v1/jobs", content=chunks, headers=JSON)
    assert chunked.status_code == 413, chunked.text
    assert limited.queued_messages() == queued


def raw_status(stack: InProcessApi, head: str, body_parts: list[bytes]) -> int:
    """Send a request head and some body bytes, never finishing the body; the status that answers."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=15) as sock:
        sock.sendall(head.encode())
        for part in body_parts:
            sock.sendall(part)
        status_line = sock.makefile("rb").readline().decode()
    return int(status_line.split()[1])


def test_the_body_limit_is_enforced_before_and_while_reading_not_after(limited):
    auth = f"Authorization: Bearer {limited.api_key}\r\n"
    head = f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}"
    # Declared too big: refused without a byte of the body sent.
    assert raw_status(limited, head + f"Content-Length: {100 * BODY_LIMIT}\r\n\r\n", []) == 413
    # Chunked and endless: refused once past the limit, though the body never ends.
    chunk = b"%x\r\n%s\r\n" % (8192, b" " * 8192)
    parts = [chunk] * (BODY_LIMIT // 8192 + 2)
    assert raw_status(limited, head + "Transfer-Encoding: chunked\r\n\r\n", parts) == 413


def test_predict_keeps_its_own_larger_limit(limited):
    image = json.dumps([[[0.5] * 32] * 32])  # one 1x32x32 input, about 5 KiB: batches stay small

    def predict(size: int) -> httpx.Response:
        body = ('{"inputs": [' + ",".join([image] * (size // len(image) + 1)) + "]}").encode()
        assert size < len(body) < size + 2 * len(image)
        return limited.http.post("/v1/ensembles/no-such-ensemble/predict", content=body, headers=JSON)

    # Past the app's limit, within predict's: read and parsed, then the ensemble is looked up.
    within = predict(3 * BODY_LIMIT)
    assert within.status_code == 404 and "no-such-ensemble" in within.text
    assert predict(PREDICT_LIMIT).status_code == 413


def test_dataset_uploads_keep_their_own_larger_limit(limited):
    junk = limited.http.post(
        "/v1/datasets",
        params={"name": "junk"},
        content=b"x" * (3 * BODY_LIMIT),
        headers={"Content-Type": "application/octet-stream"},
    )
    # Read whole and judged by the upload route (not an .npz), not cut off by the app-wide limit.
    assert junk.status_code == 422 and "npz" in junk.text, junk.text


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/ensembles", "/v1/datasets"])
def test_list_routes_cap_the_page_size_at_max_page_size(limited, path):
    assert limited.http.get(path, params={"limit": 10}).status_code == 200
    too_many = limited.http.get(path, params={"limit": 11})
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["query", "limit"]
