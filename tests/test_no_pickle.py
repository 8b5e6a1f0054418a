"""Weights are only ever safetensors: a planted pickle is never unpickled, whichever path reads models."""

from __future__ import annotations

import os
import pickle
import re
import signal
import time
from pathlib import Path

import numpy as np
import torch

from tests.factories import lenet_spec, training

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("mean_probs", "mean_logits", "weights")
UNPICKLERS = re.compile(
    r"torch\.load\(|pickle\.loads?\(|Unpickler\(|allow_pickle\s*=\s*True|joblib\.load\(|dill\.loads?\("
)


class Planted:
    """Unpickling this creates the marker file: proof that someone unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant(directory: Path, marker: Path) -> None:
    """Pickles where a careless loader would look: beside the weights, and as checkpoints."""
    payload = pickle.dumps(Planted(marker))
    for name in ("member-0.pkl", "member-0.pickle", "checkpoint-e9999-a9.safetensors", "model.bin"):
        (directory / name).write_bytes(payload)
    torch.save({"state_dict": Planted(marker)}, directory / "member-0.pt")
    torch.save({"state_dict": Planted(marker)}, directory / "checkpoint-e9999-a9.pt")


def test_no_unpickling_calls_in_the_service_code():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("api", "worker", "models", "store")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if UNPICKLERS.search(line) and not line.lstrip().startswith("#")
    ]
    assert not offenders, "\n".join(offenders)


def test_planted_pickles_are_never_loaded(stack, tmp_path):
    marker = tmp_path / "unpickled"
    jobs = [stack.submit(lenet_spec(training=training(epochs=1, seed=seed))) for seed in (0, 1)]
    finished = [stack.wait_finished(job["id"]) for job in jobs]
    assert all(job["status"] == "succeeded" for job in finished), finished
    runs = [job["runs"][0]["id"] for job in finished]
    job_dirs = [stack.home / "artifacts" / "jobs" / job["id"] for job in finished]
    for directory in job_dirs:
        plant(directory, marker)

    weights = stack.http.get(f"/v1/runs/{runs[0]}/weights")
    assert weights.status_code == 200
    assert not weights.content.startswith(b"\x80")  # a safetensors header, not a pickle's protocol byte
    inputs = np.zeros((2, 1, 8, 8)).tolist()
    for method in METHODS:
        created = stack.http.post("/v1/ensembles", json={"members": runs, "method": method})
        assert created.status_code == 201, created.text
        ensemble_id = created.json()["id"]
        assert _built(stack, ensemble_id)["status"] == "ready"
        predicted = stack.http.post(f"/v1/ensembles/{ensemble_id}/predict", json={"inputs": inputs})
        assert predicted.status_code == 200, predicted.text
        if method == "weights":  # the averaged network, written by the worker as safetensors
            assert stack.http.get(f"/v1/ensembles/{ensemble_id}/weights").status_code == 200
    assert not marker.exists()

    # The stored weights themselves swapped for a pickle: loading refuses the file, nothing is unpickled.
    for directory in job_dirs:
        (directory / "member-0.safetensors").write_bytes(pickle.dumps(Planted(marker)))
    for method in METHODS:
        created = stack.http.post("/v1/ensembles", json={"members": runs, "method": method})
        if created.status_code == 201:
            ensemble_id = created.json()["id"]
            _built(stack, ensemble_id)
            stack.http.post(f"/v1/ensembles/{ensemble_id}/predict", json={"inputs": inputs})
    assert not marker.exists()


def test_a_pickle_as_checkpoint_is_not_resumed_from(stack, tmp_path):
    """A job resumes from its checkpoint; a pickle in its place fails the job and is never unpickled."""
    marker = tmp_path / "unpickled"
    job = stack.submit(lenet_spec(training=training(epochs=6, batch_size=16)))
    stack.wait_for(job["id"], lambda j: "val_acc" in j["metrics"] and j["status"] == "running", poll=0.02)
    worker = stack.workers[-1]
    os.kill(worker.pid, signal.SIGTERM)  # hands the job back (tests/faults/test_worker_sigterm.py)
    worker.wait(30)
    directory = stack.home / "artifacts" / "jobs" / job["id"]
    for checkpoint in directory.glob("checkpoint-*"):
        checkpoint.write_bytes(pickle.dumps(Planted(marker)))
    stack.start_worker()

    job = stack.wait_finished(job["id"])
    assert job["status"] == "failed"  # with the reason: the checkpoint is not a safetensors file
    assert job["error"]
    assert not marker.exists()


def _built(stack, ensemble_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ensemble = stack.http.get(f"/v1/ensembles/{ensemble_id}").json()
        if ensemble.get("status") != "building":
            return ensemble
        time.sleep(0.2)
    raise TimeoutError(f"ensemble {ensemble_id} still building")
