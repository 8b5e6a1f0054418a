"""Ensembles through the service: member jobs, their strategies, ensembles of stored runs, predictions."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch

from models.datasets import raw_arrays, split_indices
from store.artifacts import load_weights
from tests.factories import lenet_spec, training

TINY_LAYERS = [
    {"type": "conv", "out_channels": 4, "kernel_size": 3},
    {"type": "activation", "fn": "relu"},
    {"type": "maxpool", "kernel_size": 2},
    {"type": "flatten"},
    {"type": "linear", "out_features": 10},
]


def ensemble_spec(members: int, strategy: str = "auto", **overrides) -> dict:
    spec = lenet_spec(name=f"ensemble-{strategy}", training=training(epochs=2, batch_size=32, seed=7))
    spec["ensemble"] = {"members": members, "strategy": strategy}
    return spec | overrides


def wait_ensemble(live, ensemble_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ensemble = live.http.get(f"/v1/ensembles/{ensemble_id}").json()
        if ensemble["status"] != "building":
            return ensemble
        time.sleep(0.2)
    raise TimeoutError(f"ensemble {ensemble_id} still building: {ensemble}")


def create_ensemble(live, members: list, method: str = "mean_probs") -> dict:
    response = live.http.post("/v1/ensembles", json={"members": members, "method": method})
    assert response.status_code == 201, response.text
    return wait_ensemble(live, response.json()["id"])


def weights_of(live, run_id: str, tmp_path) -> dict[str, torch.Tensor]:
    path = tmp_path / f"{run_id}.safetensors"
    path.write_bytes(live.http.get(f"/v1/runs/{run_id}/weights").content)
    return load_weights(path)[0]


def digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The raw test images and labels every digits job is evaluated on (default split)."""
    x, y = raw_arrays({"name": "digits"})
    _, _, test = split_indices({"name": "digits"})
    return x[test], y[test]


@pytest.fixture(scope="module")
def four_members(stack):
    """A 4-member ensemble job, trained once for the tests that read it."""
    job = stack.wait_finished(stack.submit(ensemble_spec(4))["id"], timeout=300)
    assert job["status"] == "succeeded", job["error"]
    return job


def test_a_four_member_job_stores_four_runs_and_an_ensemble_that_gains(stack, four_members):
    job = four_members
    assert job["kind"] == "ensemble"
    assert [run["member"] for run in job["runs"]] == [0, 1, 2, 3]
    assert [run["seed"] for run in job["runs"]] == [7, 8, 9, 10]
    assert [m["status"] for m in job["members"]] == ["succeeded"] * 4
    assert job["progress"]["fraction"] == pytest.approx(1.0)
    # Members are jobs too, but the list shows the ensemble job alone.
    listed = {j["id"] for j in stack.http.get("/v1/jobs", params={"limit": 100}).json()["items"]}
    assert job["id"] in listed and not listed & {m["id"] for m in job["members"]}
    member = stack.job(job["members"][2]["id"])
    assert member["parent_id"] == job["id"] and member["member"] == 2
    assert len(stack.curve(member["id"])) > 0

    ensemble = wait_ensemble(stack, job["ensemble_id"])
    assert ensemble["status"] == "ready" and ensemble["method"] == "mean_probs"
    evaluation = ensemble["evaluation"]
    accuracies = [run["test_acc"] for run in job["runs"]]
    assert evaluation["member_accuracies"] == pytest.approx(accuracies)
    assert evaluation["mean_member_accuracy"] == pytest.approx(sum(accuracies) / 4)
    assert evaluation["ensemble_accuracy"] >= evaluation["mean_member_accuracy"]
    assert evaluation["gain"] == pytest.approx(
        evaluation["ensemble_accuracy"] - evaluation["mean_member_accuracy"]
    )
    assert job["metrics"]["test_acc"] == pytest.approx(evaluation["ensemble_accuracy"])
    # Beside it the best single member, chosen by validation accuracy (the first of equals), never by test.
    val_accs = [run["metrics"]["val_acc"] for run in job["runs"]]
    best = val_accs.index(max(val_accs))
    assert evaluation["best_single"] == {
        "run_id": job["runs"][best]["id"],
        "member": best,
        "val_acc": pytest.approx(val_accs[best]),
        "accuracy": pytest.approx(accuracies[best]),
        "gain": pytest.approx(evaluation["ensemble_accuracy"] - accuracies[best]),
    }


def test_a_run_may_be_a_member_more_than_once(stack, four_members):
    # What greedy selection with replacement answers: a run chosen twice weighs twice in the mean.
    first, second = (run["id"] for run in four_members["runs"][:2])
    ensemble = create_ensemble(stack, [first, first, second])
    assert ensemble["status"] == "ready", ensemble["error"]
    assert [member["run_id"] for member in ensemble["members"]] == [first, first, second]
    x, _ = digits_test_split()
    inputs = {"inputs": x[:16].tolist()}
    probs = [
        np.asarray(stack.http.post(f"/v1/runs/{run}/predict", json=inputs).json()["probs"])
        for run in (first, second)
    ]
    answer = stack.http.post(f"/v1/ensembles/{ensemble['id']}/predict", json=inputs).json()
    assert np.allclose(answer["probs"], (2 * probs[0] + probs[1]) / 3, atol=1e-5)


@pytest.mark.parametrize("method", ["mean_probs", "mean_logits", "weights"])
def test_each_method_builds_an_ensemble_of_stored_runs_and_evaluates(stack, four_members, method):
    ensemble = create_ensemble(stack, [run["id"] for run in four_members["runs"]], method)
    assert ensemble["status"] == "ready", ensemble["error"]
    evaluation = ensemble["evaluation"]
    assert evaluation["method"] == method
    assert 0.0 < evaluation["ensemble_accuracy"] <= 1.0
    assert evaluation["ensemble_nll"] > 0


def test_predictions_score_what_the_evaluation_reported(stack, four_members):
    ensemble = wait_ensemble(stack, four_members["ensemble_id"])
    x, y = digits_test_split()
    response = stack.http.post(f"/v1/ensembles/{ensemble['id']}/predict", json={"inputs": x.tolist()})
    assert response.status_code == 200, response.text
    answer = response.json()
    probs = np.asarray(answer["probs"])
    assert probs.shape == (len(x), 10)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert answer["labels"] == probs.argmax(axis=1).tolist()
    accuracy = float(np.mean(np.asarray(answer["labels"]) == y))
    assert accuracy == pytest.approx(ensemble["evaluation"]["ensemble_accuracy"], abs=1e-9)

    # The same batch as a binary .npy body gives the same answer.
    body = io.BytesIO()
    np.save(body, x.astype(np.float32), allow_pickle=False)
    binary = stack.http.post(
        f"/v1/ensembles/{ensemble['id']}/predict",
        content=body.getvalue(),
        headers={"content-type": "application/x-npy"},
    )
    assert binary.status_code == 200, binary.text
    assert np.allclose(np.asarray(binary.json()["probs"]), probs, atol=1e-6)


def test_bad_predictions_are_refused(stack, four_members):
    url = f"/v1/ensembles/{four_members['ensemble_id']}/predict"
    wrong_channels = stack.http.post(url, json={"inputs": np.zeros((2, 3, 8, 8)).tolist()})
    assert wrong_channels.status_code == 422
    assert wrong_channels.json()["detail"][0]["loc"] == ["body", "inputs"]
    not_a_batch = stack.http.post(url, json={"inputs": [1, 2, 3]})
    assert not_a_batch.status_code == 422
    too_many = stack.http.post(url, json={"inputs": np.zeros((5000, 1, 8, 8)).tolist()})
    assert too_many.status_code == 413
    assert stack.http.post("/v1/ensembles/nope/predict", json={"inputs": [[[[0.0]]]]}).status_code == 404


def test_weights_across_architectures_is_refused_naming_the_member(stack, four_members):
    # Resized to lenet5's 32x32, so that only the architecture differs.
    tiny_spec = lenet_spec(
        dataset={"name": "digits", "image_size": 32},
        model={"layers": TINY_LAYERS},
        training=training(epochs=1),
    )
    tiny = stack.wait_finished(stack.submit(tiny_spec)["id"])
    members = [four_members["runs"][0]["id"], tiny["runs"][0]["id"]]
    response = stack.http.post("/v1/ensembles", json={"members": members, "method": "weights"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "members", 1]
    # Averaging predictions of different architectures is fine: they agree on inputs and classes.
    assert create_ensemble(stack, members, "mean_probs")["status"] == "ready"


def test_weights_ensemble_equals_the_parameter_mean(stack, four_members, tmp_path):
    runs = four_members["runs"][:2]
    ensemble = create_ensemble(stack, [run["id"] for run in runs], "weights")
    averaged = weights_of_ensemble(stack, ensemble["id"], tmp_path)
    first, second = (weights_of(stack, run["id"], tmp_path) for run in runs)
    for name, value in averaged.items():
        assert torch.allclose(value, (first[name] + second[name]) / 2, atol=1e-6), name


def weights_of_ensemble(live, ensemble_id: str, tmp_path) -> dict[str, torch.Tensor]:
    response = live.http.get(f"/v1/ensembles/{ensemble_id}/weights")
    assert response.status_code == 200, response.text
    path = tmp_path / f"ensemble-{ensemble_id}.safetensors"
    path.write_bytes(response.content)
    return load_weights(path)[0]


def test_unknown_runs_and_unkept_snapshots_are_422(stack, four_members):
    run = four_members["runs"][0]["id"]
    unknown = stack.http.post("/v1/ensembles", json={"members": [run, "nope"]})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "members", 1]
    unkept = stack.http.post("/v1/ensembles", json={"members": [{"run_id": run, "epoch": 99}]})
    assert unkept.status_code == 422
    assert "kept" in unkept.json()["detail"][0]["msg"]
    assert stack.http.post("/v1/ensembles", json={"members": []}).status_code == 422
    assert stack.http.get("/v1/ensembles/nope").status_code == 404


def test_snapshots_are_members_too(stack, four_members):
    run = four_members["runs"][0]["id"]
    ensemble = create_ensemble(stack, [{"run_id": run, "epoch": 1}, {"run_id": run, "epoch": 2}])
    assert ensemble["status"] == "ready", ensemble["error"]
    # The final epoch's snapshot is the run's final model.
    assert ensemble["evaluation"]["member_accuracies"][1] == pytest.approx(
        four_members["runs"][0]["test_acc"]
    )


def test_strategies_train_the_same_members(stack, tmp_path):
    """vmap, fanout and sequential train a 2-member job from the same seeds to the same weights."""
    jobs = {
        strategy: stack.submit(ensemble_spec(2, strategy, training=training(epochs=1, batch_size=32, seed=3)))
        for strategy in ("vmap", "fanout", "sequential")
    }
    finished = {strategy: stack.wait_finished(job["id"], timeout=300) for strategy, job in jobs.items()}
    for strategy, job in finished.items():
        assert job["status"] == "succeeded", (strategy, job["error"])
        assert job["strategy"] == strategy
    for member in range(2):
        reference = weights_of(stack, finished["sequential"]["runs"][member]["id"], tmp_path)
        for strategy in ("vmap", "fanout"):
            other = weights_of(stack, finished[strategy]["runs"][member]["id"], tmp_path)
            for name, value in reference.items():
                assert torch.allclose(other[name], value, rtol=1e-4, atol=1e-5), (strategy, member, name)


def test_param_averaging_keeps_averaged_weights_usable_as_members(stack, tmp_path):
    spec = lenet_spec(training=training(epochs=2))
    spec["ensemble"] = {"param_averaging": "ema", "ema_decay": 0.9}
    job = stack.wait_finished(stack.submit(spec)["id"])
    assert job["status"] == "succeeded", job["error"]
    [run] = job["runs"]
    assert run["metrics"]["averaged_test_acc"] > 0.5
    ensemble = create_ensemble(stack, [run["id"], {"run_id": run["id"], "averaged": True}])
    assert ensemble["status"] == "ready", ensemble["error"]
    assert ensemble["evaluation"]["member_accuracies"][1] == pytest.approx(
        run["metrics"]["averaged_test_acc"]
    )


def test_cancelling_an_ensemble_job_cancels_its_members(stack):
    job = stack.submit(ensemble_spec(3, "fanout", training=training(epochs=50)))
    stack.wait_for(job["id"], lambda j: any(m["status"] == "running" for m in j["members"]))
    assert stack.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    ended = stack.wait_finished(job["id"], timeout=60)
    assert ended["status"] == "cancelled"
    assert {m["status"] for m in ended["members"]} == {"cancelled"}
