"""Hosts that share no disk: an API and two workers, each with a TRAINYARD_HOME of its own, on one
PostgreSQL, one Redis and one S3 object store (a real moto server process). Every weights file,
checkpoint and upload goes through the store, so an ensemble trained across both workers is evaluated,
predicted and downloaded through the API, and a job whose worker dies resumes on the other one."""

from __future__ import annotations

import re
from collections.abc import Iterator

import boto3
import numpy as np
import pytest

from store.artifacts import load_weights
from tests.conftest import scratch_postgres
from tests.e2e.test_datasets import NPZ, digits_npz
from tests.e2e.test_ensembles import digits_test_split, ensemble_spec, wait_ensemble
from tests.factories import lenet_spec, training
from tests.live_stack import TEST_SETTINGS, LiveStack
from tests.s3_server import CREDENTIALS
from trainyard.services import start_private_redis

PREFIX = "trainyard-test"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, s3_server) -> Iterator[LiveStack]:
    bucket = s3_server.new_bucket()
    store = {
        "TRAINYARD_ARTIFACTS_URL": f"s3://{bucket}/{PREFIX}",
        "TRAINYARD_S3_ENDPOINT_URL": s3_server.endpoint_url,
    }
    redis_server = start_private_redis(tmp_path_factory.mktemp("multi-host-redis"))
    with scratch_postgres("trainyard_multi_host") as database_url:
        live = LiveStack(
            tmp_path_factory.mktemp("api-host"),
            database_url,
            redis_server.url,
            settings=TEST_SETTINGS | CREDENTIALS | store,
        )
        live.bucket = bucket
        live.worker_homes = [tmp_path_factory.mktemp(f"worker-host-{n}") for n in range(2)]
        try:
            # The three start at once, as three hosts would.
            workers = [live.start_worker(home=home, wait=False) for home in live.worker_homes]
            live.start_api()
            for worker in workers:
                live.wait_ready(worker)
            yield live
        finally:
            live.stop()
            redis_server.stop()


def stored_keys(live: LiveStack, folder: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=live.env["TRAINYARD_S3_ENDPOINT_URL"])
    listed = client.list_objects_v2(Bucket=live.bucket, Prefix=f"{PREFIX}/{folder}")
    return sorted(item["Key"].removeprefix(f"{PREFIX}/") for item in listed.get("Contents", []))


def workers_that_ran(live: LiveStack, job_id: str) -> list[int]:
    """The workers whose log shows an attempt at `job_id` (run_job logs each one)."""
    pattern = re.compile(rf"job {job_id}: attempt \d")
    return [n for n in range(len(live.workers)) if pattern.search(live.log(f"worker-{n}.log"))]


def no_artifacts_on_disk(live: LiveStack) -> None:
    for home in [live.home, *live.worker_homes]:
        assert not (home / "artifacts").exists(), f"{home} kept artifacts on its own disk"


def test_a_fanned_out_ensemble_trains_on_both_workers_and_serves_through_the_api(hosts, tmp_path):
    job = hosts.submit(ensemble_spec(2, "fanout", training=training(epochs=1, batch_size=64, seed=7)))
    job = hosts.wait_finished(job["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    members = [member["id"] for member in job["members"]]
    assert sorted(n for member in members for n in workers_that_ran(hosts, member)) == [0, 1]

    # Evaluated on a worker from the members' weights in the store, whichever host trained them.
    ensemble = wait_ensemble(hosts, job["ensemble_id"])
    assert ensemble["status"] == "ready", ensemble["error"]
    assert len(ensemble["evaluation"]["member_accuracies"]) == 2

    x, _ = digits_test_split()
    answer = hosts.http.post(f"/v1/ensembles/{ensemble['id']}/predict", json={"inputs": x[:8].tolist()})
    assert answer.status_code == 200, answer.text
    assert np.asarray(answer.json()["probs"]).shape == (8, 10)

    run = job["runs"][1]
    download = hosts.http.get(f"/v1/runs/{run['id']}/weights")
    assert download.status_code == 200 and download.headers["content-length"] == str(len(download.content))
    (tmp_path / "run.safetensors").write_bytes(download.content)
    state, meta = load_weights(tmp_path / "run.safetensors")
    assert meta["job_id"] == members[1] and state

    runs = [run["id"] for run in job["runs"]]
    averaged = hosts.http.post("/v1/ensembles", json={"members": runs, "method": "weights"})
    assert averaged.status_code == 201, averaged.text
    assert wait_ensemble(hosts, averaged.json()["id"])["status"] == "ready"
    weights = hosts.http.get(f"/v1/ensembles/{averaged.json()['id']}/weights")
    assert weights.status_code == 200
    (tmp_path / "averaged.safetensors").write_bytes(weights.content)
    assert load_weights(tmp_path / "averaged.safetensors")[1]["method"] == "weights"

    assert f"jobs/{members[0]}/member-0.safetensors" in stored_keys(hosts, f"jobs/{members[0]}/")
    assert stored_keys(hosts, "ensembles/") == [f"ensembles/{averaged.json()['id']}.safetensors"]
    no_artifacts_on_disk(hosts)


def test_a_job_whose_worker_is_killed_resumes_on_the_other_from_the_store(hosts):
    """Trained on an upload (which the API host put in the store): the second worker fetches it too."""
    body = digits_npz()
    upload = hosts.http.post("/v1/datasets", params={"name": "digits"}, content=body, headers=NPZ)
    assert upload.status_code == 201, upload.text
    spec = lenet_spec(
        dataset={"name": "upload", "id": upload.json()["id"]}, training=training(epochs=4, batch_size=16)
    )
    job = hosts.submit(spec)
    hosts.wait_for(job["id"], lambda j: "val_acc" in j["metrics"] and j["status"] == "running", poll=0.02)
    [first] = workers_that_ran(hosts, job["id"])
    hosts.kill_worker(hosts.workers[first])

    job = hosts.wait_finished(job["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2
    assert workers_that_ran(hosts, job["id"]) == [0, 1]  # the second attempt ran on the other host
    steps_per_epoch = job["progress"]["steps"] // 4
    resumed = [point for point in hosts.curve(job["id"]) if point["attempt"] == 2]
    assert resumed and min(point["step"] for point in resumed) > steps_per_epoch  # from a checkpoint
    # Only the newest checkpoints stay in the store (TRAINYARD_KEEP_CHECKPOINTS, default 3).
    checkpoints = [key for key in stored_keys(hosts, f"jobs/{job['id']}/") if "/checkpoint-" in key]
    assert len(checkpoints) == 3
    assert stored_keys(hosts, "uploads/") == [f"uploads/{upload.json()['id']}.npz"]
    no_artifacts_on_disk(hosts)
