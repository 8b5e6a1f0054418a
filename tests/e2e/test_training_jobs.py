"""A job goes from HTTP to a real Celery worker and back: SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from models.cnn import build_model
from models.datasets import load_splits
from models.spec import JobSpec
from store.artifacts import load_weights
from tests.factories import lenet_spec, training
from worker.bookkeeping import evaluate


def check_job_end_to_end(live, tmp_path) -> None:
    submitted = live.submit(lenet_spec())
    assert submitted["status"] == "queued"
    assert submitted["summary"]["params"] == 61_706  # LeNet-5 for 10 classes, known before training

    job = live.wait_finished(submitted["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 1
    assert job["progress"]["fraction"] == pytest.approx(1.0)
    assert job["metrics"]["test_acc"] > 0.5
    # training.compile auto, the default: this short job trained eagerly, and says why.
    engine = job["metrics"]["engine"]
    assert engine["channels_last"] and not engine["compiled"], engine
    reason = engine["compile_reason"]
    assert reason.startswith("auto: eager: ") and "steps left at" in reason

    curve = live.curve(job["id"])
    losses = [p["value"] for p in curve if p["name"] == "train_loss"]
    assert len(losses) >= 4
    assert losses[-1] < losses[0] * 0.7, losses
    assert {p["name"] for p in curve} >= {"train_loss", "lr", "val_loss", "val_acc"}
    assert [p["step"] for p in curve if p["name"] == "train_loss"] == sorted(
        p["step"] for p in curve if p["name"] == "train_loss"
    )

    [run] = job["runs"]
    stored_run = live.http.get(f"/v1/runs/{run['id']}").json()
    assert stored_run["test_acc"] == job["metrics"]["test_acc"]
    assert stored_run["metrics"]["engine"] == engine
    weights = live.http.get(f"/v1/runs/{run['id']}/weights")
    assert weights.status_code == 200
    (tmp_path / "model.safetensors").write_bytes(weights.content)
    state, meta = load_weights(tmp_path / "model.safetensors")

    # The stored model rebuilds from what the file itself carries and scores what was reported.
    spec = JobSpec.model_validate(meta["spec"])
    model = build_model(spec.model, tuple(meta["input_shape"]), meta["num_classes"], spec.regularization)
    model.load_state_dict(state)
    splits = load_splits(spec.dataset, spec.model)
    _, test_acc = evaluate(model, *splits.test)
    assert test_acc == pytest.approx(run["test_acc"], abs=1e-9)


def test_job_end_to_end_on_sqlite(stack, tmp_path):
    check_job_end_to_end(stack, tmp_path)


def test_job_end_to_end_on_postgresql(pg_stack, tmp_path):
    check_job_end_to_end(pg_stack, tmp_path)


def test_submission_answers_location_and_lists_newest_first(stack):
    first = stack.submit(lenet_spec(name="first", training=training(epochs=1)))
    response = stack.http.post("/v1/jobs", json=lenet_spec(name="second", training=training(epochs=1)))
    assert response.status_code == 202
    second = response.json()
    assert response.headers["location"] == f"/v1/jobs/{second['id']}"

    page = stack.http.get("/v1/jobs", params={"limit": 1}).json()
    assert [j["id"] for j in page["items"]] == [second["id"]]
    page = stack.http.get("/v1/jobs", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in page["items"]] == [first["id"]]

    stack.wait_finished(second["id"])
    succeeded = stack.http.get("/v1/jobs", params={"status": "succeeded", "limit": 100}).json()["items"]
    assert all(j["status"] == "succeeded" for j in succeeded)
    assert second["id"] in {j["id"] for j in succeeded}


def test_unknown_ids_are_404(stack):
    assert stack.http.get("/v1/jobs/nope").status_code == 404
    assert stack.http.post("/v1/jobs/nope/cancel").status_code == 404
    assert stack.http.get("/v1/jobs/nope/metrics").status_code == 404
    assert stack.http.get("/v1/runs/nope").status_code == 404
    assert stack.http.get("/v1/runs/nope/weights").status_code == 404


def test_curve_increments_after_a_point_id(stack):
    job = stack.wait_finished(stack.submit(lenet_spec(training=training(epochs=1)))["id"])
    everything = stack.curve(job["id"])
    middle = everything[len(everything) // 2]["id"]
    rest = stack.http.get(f"/v1/jobs/{job['id']}/metrics", params={"after": middle}).json()
    assert rest["points"] == everything[len(everything) // 2 + 1 :]
    assert rest["last_id"] == everything[-1]["id"]


def test_divergent_job_fails_with_the_reason(stack):
    job = stack.submit(lenet_spec(optimizer={"type": "sgd", "lr": 1e6}))
    job = stack.wait_finished(job["id"])
    assert job["status"] == "failed"
    assert job["error"].startswith("diverged at step ")
    assert job["runs"] == []


def test_cancel_a_running_job_then_the_worker_takes_the_next(stack):
    long_job = stack.submit(lenet_spec(training=training(epochs=500)))
    stack.wait_for(long_job["id"], lambda j: j["status"] == "running" and j["progress"]["step"] > 0)
    response = stack.http.post(f"/v1/jobs/{long_job['id']}/cancel")
    assert response.status_code == 202
    cancelled = stack.wait_finished(long_job["id"], timeout=10)
    assert cancelled["status"] == "cancelled"
    assert cancelled["progress"]["fraction"] < 0.5

    assert stack.http.post(f"/v1/jobs/{long_job['id']}/cancel").status_code == 409
    next_job = stack.wait_finished(stack.submit(lenet_spec(training=training(epochs=1)))["id"])
    assert next_job["status"] == "succeeded"


def test_lost_worker_resumes_from_checkpoint(stack):
    """kill -9 the worker after the first checkpoint: the next worker finishes the job, not from zero."""
    spec = lenet_spec(training=training(epochs=12, batch_size=16))
    job = stack.submit(spec)
    # Validation metrics are stored in the same transaction as the epoch's checkpoint.
    stack.wait_for(job["id"], lambda j: "val_acc" in j["metrics"] and j["status"] == "running", poll=0.02)
    stack.kill_worker(stack.workers[-1])
    stack.start_worker()

    job = stack.wait_finished(job["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2

    curve = stack.curve(job["id"])
    steps_per_epoch = job["progress"]["steps"] // 12
    resumed = [p for p in curve if p["attempt"] == 2]
    assert resumed, "the second attempt reported nothing"
    assert min(p["step"] for p in resumed) > steps_per_epoch  # started after a checkpoint, not at 0
    steps = [p["step"] for p in curve if p["name"] == "train_loss"]
    assert steps == sorted(set(steps))  # the stored curve has no steps twice
    # Only the newest checkpoints stay on disk (TRAINYARD_KEEP_CHECKPOINTS, default 3).
    assert len(list((stack.home / "artifacts" / "jobs" / job["id"]).glob("checkpoint-*"))) == 3


def test_worker_process_tree_leaves_no_orphans(stack):
    import psutil

    worker = stack.workers[-1]
    children = psutil.Process(worker.pid).children(recursive=True)
    assert children, "the worker has a training process"
    stack.kill_worker(worker)
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    stack.start_worker()
