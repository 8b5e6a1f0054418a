"""Snapshot ensembles (Huang et al. 2017): one run, M cosine cycles, the weights at their ends an ensemble."""

from __future__ import annotations

import itertools

import pytest

from tests.e2e.test_ensembles import wait_ensemble
from tests.factories import lenet_spec, training


def snapshot_spec(snapshots: int, epochs: int, **overrides) -> dict:
    spec = lenet_spec(
        name="snapshots",
        optimizer={"type": "momentum", "lr": 0.05, "momentum": 0.9},
        training=training(epochs=epochs, batch_size=64),
        ensemble={"snapshots": snapshots},
    )
    del spec["lr_schedule"]  # the cycles choose it
    return spec | overrides


def test_a_snapshot_job_yields_one_ensemble_of_its_cycle_end_weights(stack):
    submitted = stack.submit(snapshot_spec(3, epochs=6))
    # The schedule the job trains with is in its spec: three cycles of two epochs.
    assert submitted["spec"]["lr_schedule"] == {
        "type": "cosine_restarts",
        "t_0": 2,
        "t_mult": 1,
        "eta_min": 0.0,
        "unit": "epoch",
        "warmup_steps": 0,
    }
    job = stack.wait_finished(submitted["id"], timeout=300)
    assert job["status"] == "succeeded", job["error"]
    [run] = job["runs"]
    assert job["ensemble_id"] == job["id"]

    ensemble = wait_ensemble(stack, job["ensemble_id"])
    assert ensemble["status"] == "ready", ensemble["error"]
    assert [(m["run_id"], m["epoch"]) for m in ensemble["members"]] == [(run["id"], e) for e in (2, 4, 6)]
    assert ensemble["method"] == "mean_probs" and ensemble["job_id"] == job["id"]
    evaluation = ensemble["evaluation"]
    assert len(evaluation["member_accuracies"]) == 3
    # The last cycle's end is the run's final model.
    assert evaluation["member_accuracies"][2] == pytest.approx(run["test_acc"])
    listed = stack.http.get("/v1/ensembles", params={"limit": 100}).json()["items"]
    assert job["id"] in [e["id"] for e in listed]

    # The lr restarts at the top after each cycle: a point carries the lr of the step after it, so it
    # rises at the points that end epochs 2, 4 and 6, and falls everywhere else.
    lrs = [point for point in stack.curve(job["id"]) if point["name"] == "lr"]
    rises = [
        later["epoch"] for earlier, later in itertools.pairwise(lrs) if later["value"] > earlier["value"]
    ]
    assert rises == [2.0, 4.0, 6.0]
    assert lrs[-1]["value"] == pytest.approx(0.05)
    # Checkpoints beyond the newest three (TRAINYARD_KEEP_CHECKPOINTS) are pruned, snapshots are not.
    kept = stack.http.post("/v1/ensembles", json={"members": [{"run_id": run["id"], "epoch": 2}]})
    assert kept.status_code == 201, kept.text
    pruned = stack.http.post("/v1/ensembles", json={"members": [{"run_id": run["id"], "epoch": 1}]})
    assert pruned.status_code == 422 and "kept" in pruned.text


@pytest.mark.parametrize(
    ("spec", "loc", "words"),
    [
        (snapshot_spec(4, epochs=6), ["ensemble", "snapshots"], "multiple"),
        (
            snapshot_spec(3, epochs=6, ensemble={"snapshots": 3, "members": 2}),
            ["ensemble", "snapshots"],
            "one",
        ),
        (snapshot_spec(3, epochs=6, lr_schedule={"type": "constant"}), ["lr_schedule"], "t_0 2"),
        (
            snapshot_spec(3, epochs=6, lr_schedule={"type": "cosine_restarts", "t_0": 3}),
            ["lr_schedule"],
            "cosine_restarts",
        ),
        (snapshot_spec(0, epochs=6), ["ensemble", "snapshots"], "greater"),
        (
            snapshot_spec(3, epochs=6, training=training(epochs=6, early_stopping={"patience": 1})),
            ["ensemble", "snapshots"],
            "early_stopping",
        ),
    ],
    ids=["not-a-multiple", "members", "another-schedule", "other-cycles", "zero", "early-stopping"],
)
def test_a_bad_snapshot_spec_is_a_422_at_the_field_and_nothing_is_queued(in_process_api, spec, loc, words):
    response = in_process_api.http.post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    [error] = [e for e in response.json()["detail"] if e["loc"] == ["body", *loc]]
    assert words in error["msg"]
    assert in_process_api.http.get("/v1/jobs").json()["items"] == []
    assert in_process_api.queued_messages() == 0


def test_the_cycles_schedule_may_be_given_with_its_floor_and_warmup(in_process_api):
    schedule = {"type": "cosine_restarts", "t_0": 2, "eta_min": 0.001, "warmup_steps": 10}
    job = in_process_api.submit(snapshot_spec(3, epochs=6, lr_schedule=schedule))
    assert job["spec"]["lr_schedule"] == schedule | {"t_mult": 1, "unit": "epoch"}
    assert job["spec"]["ensemble"]["snapshots"] == 3
