"""Early stopping through the service: refused specs, and a stopped job whose weights give its metrics."""

from __future__ import annotations

import pytest

from models.cnn import build_model
from models.datasets import load_splits
from models.spec import JobSpec
from store.artifacts import load_weights
from tests.factories import lenet_spec, training
from worker.bookkeeping import evaluate

# No val_acc beats another by more than 1: the first epoch stays the best and patience 1 stops after the
# second, whatever the floating point of the worker's machine.
STOPS_AFTER_EPOCH_2 = {"metric": "val_acc", "patience": 1, "min_delta": 1.0}


def stopping(**fields) -> dict:
    return training(epochs=6, early_stopping=STOPS_AFTER_EPOCH_2) | fields


BAD_SPECS = [
    ("patience 0", {"early_stopping": {"patience": 0}}, ["early_stopping", "patience"]),
    ("negative min_delta", {"early_stopping": {"min_delta": -0.1}}, ["early_stopping", "min_delta"]),
    ("test metric", {"early_stopping": {"metric": "test_acc"}}, ["early_stopping", "metric"]),
    ("unknown field", {"early_stopping": {"patients": 3}}, ["early_stopping", "patients"]),
    ("unknown keep", {"keep": "first"}, ["keep"]),
]


@pytest.mark.parametrize("fields, loc", [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_a_bad_early_stopping_spec_is_422_at_its_field_and_nothing_is_queued(in_process_api, fields, loc):
    response = in_process_api.http.post("/v1/jobs", json=lenet_spec(training=training(**fields)))
    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in response.json()["detail"]]
    assert ["body", "training", *loc] in locs, locs
    assert in_process_api.http.get("/v1/jobs").json()["items"] == []
    assert in_process_api.queued_messages() == 0


def test_vmap_with_early_stopping_is_refused_at_the_ensemble(in_process_api):
    spec = lenet_spec(training=stopping(), ensemble={"members": 4, "strategy": "vmap"})
    response = in_process_api.http.post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "ensemble"] and "early stopping" in error["msg"]
    assert in_process_api.queued_messages() == 0


def test_the_stored_spec_shows_which_weights_are_kept(in_process_api):
    stopped = in_process_api.submit(lenet_spec(training=stopping()))
    plain = in_process_api.submit(lenet_spec())
    assert in_process_api.job(stopped["id"])["spec"]["training"]["keep"] == "best"
    assert in_process_api.job(plain["id"])["spec"]["training"]["keep"] == "last"


def test_an_early_stopped_job_succeeds_and_its_weights_give_its_best_metric(stack, tmp_path):
    job = stack.wait_finished(stack.submit(lenet_spec(training=stopping()))["id"])
    assert job["status"] == "succeeded", job["error"]
    assert (job["metrics"]["best_epoch"], job["metrics"]["stopped_epoch"]) == (1, 2)
    assert job["progress"]["epoch"] == 2 and job["progress"]["fraction"] < 1
    assert [p["epoch"] for p in stack.curve(job["id"]) if p["name"] == "val_acc"] == [1, 2]

    [run] = job["runs"]
    assert run["metrics"]["val_acc"] == job["metrics"]["val_acc"]
    path = tmp_path / "weights.safetensors"
    path.write_bytes(stack.http.get(f"/v1/runs/{run['id']}/weights").content)
    state, meta = load_weights(path)
    spec = JobSpec.model_validate(meta["spec"])
    splits = load_splits(spec.dataset, spec.model)
    model = build_model(spec.model, splits.input_shape, splits.num_classes)
    model.load_state_dict(state)
    val_loss, val_acc = evaluate(model, *splits.val)
    assert val_acc == job["metrics"]["val_acc"]  # the best epoch's, the first here
    assert val_loss == pytest.approx(job["metrics"]["val_loss"], rel=1e-4)
    assert evaluate(model, *splits.test)[1] == job["metrics"]["test_acc"]


def test_an_ensemble_with_early_stopping_fans_out_and_each_member_stops(stack):
    spec = lenet_spec(
        dataset={"name": "digits", "train_fraction": 0.25},  # batch 4 makes many steps: fewer images
        training=stopping(batch_size=4),
        ensemble={"members": 4, "strategy": "auto"},
    )
    job = stack.wait_finished(stack.submit(spec)["id"], timeout=300)
    assert job["status"] == "succeeded", job["error"]
    assert job["strategy"] == "fanout"  # without early stopping, 4 members at batch 4 would vmap on the CPU
    for run in job["runs"]:
        assert (run["metrics"]["best_epoch"], run["metrics"]["stopped_epoch"]) == (1, 2)
