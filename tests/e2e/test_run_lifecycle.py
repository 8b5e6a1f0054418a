"""A trained run through the service: its predictions, its ONNX file (onnxruntime answers what the service
does), the weights-ensemble warning, and deleting it all with its files."""

from __future__ import annotations

import io
import re

import numpy as np
import onnxruntime
import pytest

from store.streams import curve_key
from tests.e2e.test_ensembles import create_ensemble, digits_test_split
from tests.factories import lenet_spec, training

# Batch norm and vanilla dropout (which scales at test time): both must act as in evaluation.
NORM_LAYERS = [
    {"type": "conv", "out_channels": 6, "kernel_size": 3, "padding": 1},
    {"type": "batchnorm"},
    {"type": "activation", "fn": "relu"},
    {"type": "maxpool", "kernel_size": 2},
    {"type": "dropout", "p": 0.3, "mode": "vanilla"},
    {"type": "flatten"},
    {"type": "linear", "out_features": 32},
    {"type": "batchnorm"},
    {"type": "activation", "fn": "tanh"},
    {"type": "dropout", "p": 0.2},
    {"type": "linear", "out_features": 10},
]


@pytest.fixture(scope="module")
def trained(stack) -> dict[str, dict]:
    """A 1-epoch lenet5 keeping EMA weights; a 2-member job of a layer list with batch norm and dropout."""
    lenet = lenet_spec(training=training(epochs=1), ensemble={"param_averaging": "ema", "ema_decay": 0.9})
    norm = lenet_spec(model={"layers": NORM_LAYERS}, training=training(epochs=1))
    norm["ensemble"] = {"members": 2}
    submitted = {"lenet": stack.submit(lenet)["id"], "norm": stack.submit(norm)["id"]}
    jobs = {name: stack.wait_finished(job_id, timeout=300) for name, job_id in submitted.items()}
    for job in jobs.values():
        assert job["status"] == "succeeded", job["error"]
    return jobs


def predict(stack, run_id: str, inputs: np.ndarray, **params) -> np.ndarray:
    response = stack.http.post(f"/v1/runs/{run_id}/predict", json={"inputs": inputs.tolist()}, params=params)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["probs"])


def test_a_runs_predictions_score_its_test_accuracy(stack, trained):
    run = trained["lenet"]["runs"][0]
    x, y = digits_test_split()
    response = stack.http.post(f"/v1/runs/{run['id']}/predict", json={"inputs": x.tolist()})
    assert response.status_code == 200, response.text
    probs, labels = np.asarray(response.json()["probs"]), response.json()["labels"]
    assert probs.shape == (len(x), 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert labels == probs.argmax(1).tolist()
    assert np.mean(np.asarray(labels) == y) == pytest.approx(run["test_acc"], abs=1e-9)

    body = io.BytesIO()
    np.save(body, x.astype(np.float32), allow_pickle=False)
    binary = stack.http.post(
        f"/v1/runs/{run['id']}/predict",
        content=body.getvalue(),
        headers={"content-type": "application/x-npy"},
    )
    assert np.allclose(np.asarray(binary.json()["probs"]), probs, atol=1e-6)
    # The EMA weights are another network; a run without them says so.
    assert not np.allclose(predict(stack, run["id"], x[:50], averaged="true"), probs[:50], atol=1e-6)
    norm_run = trained["norm"]["runs"][0]["id"]
    refused = stack.http.post(
        f"/v1/runs/{norm_run}/predict", json={"inputs": x[:2].tolist()}, params={"averaged": True}
    )
    assert refused.status_code == 409 and "no averaged weights" in refused.json()["detail"]


def test_run_predictions_have_the_limits_of_ensemble_predictions(stack, trained):
    url = f"/v1/runs/{trained['lenet']['runs'][0]['id']}/predict"
    wrong_channels = stack.http.post(url, json={"inputs": np.zeros((2, 3, 8, 8)).tolist()})
    assert wrong_channels.status_code == 422 and wrong_channels.json()["detail"][0]["loc"] == [
        "body",
        "inputs",
    ]
    assert stack.http.post(url, json={"inputs": np.zeros((5000, 1, 8, 8)).tolist()}).status_code == 413


@pytest.mark.parametrize(("job", "averaged"), [("lenet", False), ("lenet", True), ("norm", False)])
def test_onnxruntime_gives_the_services_probabilities(stack, trained, job, averaged):
    run_id = trained[job]["runs"][0]["id"]
    response = stack.http.get(f"/v1/runs/{run_id}/export", params={"format": "onnx", "averaged": averaged})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/onnx"
    session = onnxruntime.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    [graph_input] = session.get_inputs()
    channels, height, width = graph_input.shape[1:]
    assert graph_input.name == "inputs" and isinstance(graph_input.shape[0], str)  # a dynamic batch
    # Pixels at the dataset's scale (digits: 0..16) at the trained size, in two batch sizes.
    for n in (1, 37):
        x = np.random.default_rng(n).uniform(0, 16, (n, channels, height, width)).astype(np.float32)
        [onnx_probs] = session.run(None, {"inputs": x})
        assert onnx_probs.shape == (n, 10)
        np.testing.assert_allclose(
            onnx_probs, predict(stack, run_id, x, averaged=averaged), atol=1e-5, rtol=0
        )


def test_a_weights_ensemble_of_separate_runs_warns_and_one_of_a_single_runs_snapshots_does_not(
    stack, trained
):
    separate = create_ensemble(stack, [run["id"] for run in trained["norm"]["runs"]], "weights")
    assert separate["status"] == "ready", separate["error"]
    [warning] = separate["evaluation"]["warnings"]
    assert "2 different training runs" in warning and "independently initialised" in warning

    run_id = trained["lenet"]["runs"][0]["id"]
    one_run = [{"run_id": run_id, "epoch": 1}, {"run_id": run_id, "averaged": True}, run_id]
    snapshots = create_ensemble(stack, one_run, "weights")
    assert snapshots["status"] == "ready", snapshots["error"]
    assert "warnings" not in snapshots["evaluation"]
    # Averaging predictions of separate runs is what ensembles are for: no warning.
    assert (
        "warnings" not in create_ensemble(stack, [run["id"] for run in trained["norm"]["runs"]])["evaluation"]
    )


def delete_refused_by_ensembles(stack, job_id: str) -> list[str]:
    """DELETE the job, which is refused naming the ensembles that use its runs; delete those: their ids."""
    refused = stack.http.delete(f"/v1/jobs/{job_id}")
    assert refused.status_code == 409, refused.text
    named = [i for i in re.findall(r"\b[0-9a-f]{32}\b", refused.json()["detail"]) if i != job_id]
    assert named, refused.text
    for ensemble_id in named:
        assert stack.http.delete(f"/v1/ensembles/{ensemble_id}").status_code == 204
        assert stack.http.get(f"/v1/ensembles/{ensemble_id}").status_code == 404
    return named


def test_deleting_a_job_takes_its_runs_files_and_stream_once_no_ensemble_uses_them(stack, trained):
    job = trained["lenet"]
    run_id = job["runs"][0]["id"]
    folder = stack.home / "artifacts" / "jobs" / job["id"]
    assert folder.is_dir() and stack.redis.exists(curve_key(job["id"]))
    ensemble = create_ensemble(stack, [{"run_id": run_id, "averaged": True}, run_id], "weights")
    weights_file = stack.home / "artifacts" / "ensembles" / f"{ensemble['id']}.safetensors"
    assert weights_file.is_file()

    assert ensemble["id"] in delete_refused_by_ensembles(stack, job["id"])
    assert not weights_file.exists()
    assert stack.http.get(f"/v1/jobs/{job['id']}").status_code == 200  # refused: nothing deleted

    assert stack.http.delete(f"/v1/jobs/{job['id']}").status_code == 204
    for gone in (f"/v1/jobs/{job['id']}", f"/v1/runs/{run_id}", f"/v1/runs/{run_id}/weights"):
        assert stack.http.get(gone).status_code == 404, gone
    assert (
        stack.http.post(f"/v1/runs/{run_id}/predict", json={"inputs": [[[[0.0] * 8] * 8]]}).status_code == 404
    )
    assert not folder.exists() and not stack.redis.exists(curve_key(job["id"]))


def test_an_ensemble_job_is_deleted_with_its_members_and_the_ensemble_it_built(stack, trained):
    job = trained["norm"]
    member = job["members"][0]["id"]
    refused = stack.http.delete(f"/v1/jobs/{member}")
    assert refused.status_code == 409 and f"ensemble job {job['id']}" in refused.json()["detail"]
    # The earlier tests' ensembles of its runs are in the way; the one the job built itself is not.
    assert job["ensemble_id"] not in delete_refused_by_ensembles(stack, job["id"])
    assert stack.http.delete(f"/v1/jobs/{job['id']}").status_code == 204
    for gone in (
        f"/v1/jobs/{member}",
        f"/v1/ensembles/{job['ensemble_id']}",
        f"/v1/runs/{job['runs'][1]['id']}",
    ):
        assert stack.http.get(gone).status_code == 404, gone
    assert not (stack.home / "artifacts" / "jobs" / member).exists()


def test_the_python_client_predicts_exports_and_deletes(stack, trained):
    from trainyard.client import TrainyardClient, TrainyardError

    client = TrainyardClient(stack.url, api_key=stack.http.headers["Authorization"].removeprefix("Bearer "))
    job = stack.wait_finished(stack.submit(lenet_spec(training=training(epochs=1)))["id"])
    run_id = job["runs"][0]["id"]
    session = onnxruntime.InferenceSession(client.export_onnx(run_id), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 16, (20, *session.get_inputs()[0].shape[1:])).astype(np.float32)
    probs = np.asarray(client.predict_run(run_id, x)["probs"])
    assert np.allclose(np.asarray(client.predict_run(run_id, x, npy=True)["probs"]), probs, atol=1e-6)
    mirrored = np.asarray(client.predict_run(run_id, x[..., ::-1])["probs"])
    flip_averaged = np.asarray(client.predict_run(run_id, x, tta="flip")["probs"])
    np.testing.assert_allclose(flip_averaged, (probs + mirrored) / 2, atol=1e-6, rtol=0)
    [onnx_probs] = session.run(None, {"inputs": x})
    np.testing.assert_allclose(onnx_probs, probs, atol=1e-5, rtol=0)

    client.delete_job(job["id"])
    with pytest.raises(TrainyardError) as gone:
        client.job(job["id"])
    assert gone.value.status_code == 404
