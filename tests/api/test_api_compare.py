"""GET /v1/compare: several jobs' curves on shared x axes, for overlays such as SGD vs Nesterov."""

from __future__ import annotations

import pytest

from tests.factories import lenet_spec, training


@pytest.fixture(scope="module")
def two_jobs(stack) -> list[dict]:
    """Two finished jobs with different optimizers and batch sizes, so their steps interleave."""
    sgd = stack.submit(lenet_spec(name="compare-sgd"))
    nesterov = stack.submit(
        lenet_spec(
            name="compare-nesterov",
            optimizer={"type": "nesterov", "lr": 0.02, "momentum": 0.9},
            training=training(batch_size=64),
        )
    )
    finished = [stack.wait_finished(job["id"]) for job in (sgd, nesterov)]
    assert [job["status"] for job in finished] == ["succeeded", "succeeded"], finished
    return finished


def compare(stack, **params):
    return stack.http.get("/v1/compare", params=params)


def own_curve(stack, job_id: str, name: str, axis: str) -> dict[float, float]:
    return {p[axis]: p["value"] for p in stack.curve(job_id) if p["name"] == name}


def test_series_share_one_x_axis_with_nulls_where_a_job_has_no_point(stack, two_jobs):
    ids = [job["id"] for job in two_jobs]
    response = compare(stack, jobs=",".join(ids), names="train_loss,val_acc")
    assert response.status_code == 200, response.text
    body = response.json()

    assert body["x"] == "epoch"
    assert [(j["id"], j["spec"]["optimizer"], j["spec"]["lr"]) for j in body["jobs"]] == [
        (ids[0], "sgd", 0.1),
        (ids[1], "nesterov", 0.02),
    ]
    assert body["jobs"][1]["spec"]["momentum"] == 0.9
    assert list(body["series"]) == ["train_loss", "val_acc"]
    for name, series in body["series"].items():
        assert series["x"] == sorted(set(series["x"]))
        for job_id in ids:
            values = series["values"][job_id]
            assert len(values) == len(series["x"])
            # Every point of the job's own curve is in its place; the other places are null.
            present = {x: v for x, v in zip(series["x"], values, strict=True) if v is not None}
            assert present == own_curve(stack, job_id, name, "epoch")

    # Both report every 5 steps; with batches of 64 that is every other report of the batches of 32.
    losses = body["series"]["train_loss"]["values"]
    assert None not in losses[ids[0]]
    assert losses[ids[1]].count(None) >= len(losses[ids[1]]) // 3
    # Validation runs after each epoch for both: both final accuracies are there, at epoch 2.
    val_acc = body["series"]["val_acc"]
    assert val_acc["x"] == [1.0, 2.0]
    for job in two_jobs:
        assert val_acc["values"][job["id"]][-1] == pytest.approx(job["metrics"]["val_acc"])


def test_step_axis_and_max_points(stack, two_jobs):
    ids = [job["id"] for job in two_jobs]
    body = compare(stack, jobs=",".join(ids), x="step", max_points=6).json()

    assert body["x"] == "step"
    assert {"train_loss", "lr", "val_loss", "val_acc"} <= set(body["series"])
    loss = body["series"]["train_loss"]
    assert all(isinstance(x, int) for x in loss["x"])
    for job_id in ids:
        kept = [v for v in loss["values"][job_id] if v is not None]
        assert 4 <= len(kept) <= 6
    # The last step of each job survives the thinning: 2 epochs of its batches.
    last_steps = {job_id: max(own_curve(stack, job_id, "train_loss", "step")) for job_id in ids}
    for job_id, step in last_steps.items():
        assert loss["values"][job_id][loss["x"].index(step)] is not None


def test_unknown_job_is_404_naming_it(stack, two_jobs):
    response = compare(stack, jobs=f"{two_jobs[0]['id']},no-such-job")
    assert response.status_code == 404
    assert "no-such-job" in response.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"jobs": "only-one"},
        {"jobs": ",".join(f"job{i}" for i in range(17))},
        {"jobs": "a,,b"},
        {"jobs": "a,a"},
    ],
    ids=["missing", "one", "seventeen", "empty-item", "duplicate"],
)
def test_bad_job_lists_are_422_on_the_jobs_parameter(stack, params):
    response = compare(stack, **params)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["query", "jobs"]]


def test_bad_axis_is_422(stack, two_jobs):
    response = compare(stack, jobs=",".join(job["id"] for job in two_jobs), x="time")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "x"]
