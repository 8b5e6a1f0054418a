"""Every succeeded run keeps its validation predictions, and ensemble selection reads those alone: jobs
trained by the worker's loop, stored by its success_outcome, selected by store/ensemble_selection.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import models.datasets
from models.datasets import Splits, load_splits
from models.ensemble import Member
from models.spec import SpecError
from store.artifacts import load_val_predictions, load_weights, save_val_predictions, val_predictions_path
from store.ensemble_selection import select_members
from store.ensembles import member_ref
from store.lifecycle import Claim
from store.objects import ArtifactStore, artifact_store
from store.settings import Settings
from store.tables import Run
from tests.factories import job_spec, training
from worker.bookkeeping import class_probabilities
from worker.run_job import success_outcome
from worker.training import train

CPU = torch.device("cpu")
DIGITS = {"name": "digits", "train_fraction": 0.25}  # the validation split stays whole
# Three trials of a small sweep: seeds, and one evaluated with flip averaging (its predictions must be too).
TRIALS = [
    job_spec(dataset=DIGITS, training=training(epochs=1, seed=0)),
    job_spec(dataset=DIGITS, training=training(epochs=1, seed=1, augment={"flip": True, "eval_flip": True})),
    job_spec(dataset=DIGITS, optimizer={"type": "momentum", "lr": 0.05}, training=training(epochs=1, seed=2)),
]


def stored_runs(home: Path, splits: Splits) -> list[Run]:
    """The trials trained on `splits` and stored as the worker stores a succeeded job's run."""
    runs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steps this small only pay threads' synchronisation, a lot on a busy CPU
    try:
        for index, spec in enumerate(TRIALS):
            job_id = f"trial{index}"
            claim = Claim(job_id=job_id, attempt=1, spec=spec.model_dump(mode="json"))
            result = train(spec, splits, device=CPU)
            [run] = success_outcome(claim, spec, splits, result, Settings(home=home)).runs
            run.id = job_id  # the database would give it one
            runs.append(run)
    finally:
        torch.set_num_threads(threads)
    return runs


@pytest.fixture(scope="module")
def splits() -> Splits:
    return load_splits(DIGITS, {"arch": "lenet5"})


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("trials")


@pytest.fixture(scope="module")
def store(home) -> ArtifactStore:
    """Where the worker's success_outcome stored the runs' files: the home's artifact store."""
    return artifact_store(Settings(home=home))


@pytest.fixture(scope="module")
def runs(splits, home) -> list[Run]:
    return stored_runs(home, splits)


def test_a_succeeded_run_keeps_its_weights_probabilities_on_the_validation_split(splits, runs, store):
    x_val, y_val = splits.val
    for spec, run in zip(TRIALS, runs, strict=True):
        path = val_predictions_path(store.at(run.weights_path))
        assert path.key == f"jobs/{run.job_id}/member-0.val-predictions.safetensors"
        probs, labels = load_val_predictions(path)
        assert torch.equal(labels, y_val) and probs.dtype == torch.float32
        # What the stored weights give, rebuilt from their file, evaluated as training evaluated them.
        model = Member(*load_weights(store.at(run.weights_path))).build()
        eval_flip = bool(spec.training.augment and spec.training.augment.eval_flip)
        expected = class_probabilities(model, x_val, eval_flip=eval_flip)
        torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
        accuracy = (probs.argmax(1) == labels).sum().item() / len(labels)
        assert accuracy == pytest.approx(run.metrics["val_acc"], abs=1e-9)
        nll = -probs[torch.arange(len(labels)), labels].log().mean().item()
        assert nll == pytest.approx(run.metrics["val_loss"], rel=1e-5)


def test_flipping_the_test_labels_changes_nothing_in_the_selection(
    splits, runs, store, tmp_path, monkeypatch
):
    x_test, y_test = splits.test_raw
    permuted = y_test[torch.randperm(len(y_test), generator=torch.Generator().manual_seed(0))]
    altered = stored_runs(tmp_path, dataclasses.replace(splits, test_raw=(x_test, permuted)))
    # The test split did change what was measured on it...
    assert [run.metrics["test_acc"] for run in altered] != [run.metrics["test_acc"] for run in runs]

    def no_dataset(*args, **kwargs):
        raise AssertionError("selection loaded a dataset")

    monkeypatch.setattr(models.datasets, "load_splits", no_dataset)
    monkeypatch.setattr(models.datasets, "_load_raw", no_dataset)  # beneath every loader
    # ... but not what selection chose (the refs differ only in the runs' ids: compare positions).
    for select, objective in [("greedy", "val_acc"), ("greedy", "val_loss"), ("top_k", "val_acc")]:
        size = 5 if select == "greedy" else 2
        chosen = [
            [ids.index(ref["run_id"]) for ref in select_members(trials, select, size, objective, store=at)]
            for trials, ids, at in [
                (runs, [r.id for r in runs], store),
                (altered, [r.id for r in altered], artifact_store(Settings(home=tmp_path))),
            ]
        ]
        assert chosen[0] == chosen[1], (select, objective)
        assert len(chosen[0]) == size


def test_greedy_refs_repeat_a_run_chosen_twice(runs, store):
    refs = select_members(runs, "greedy", size=len(runs) + 2, store=store)
    assert len(refs) == len(runs) + 2 and len({ref["run_id"] for ref in refs}) < len(refs)
    assert all(ref == member_ref(ref["run_id"]) for ref in refs)
    best = max(runs, key=lambda run: run.metrics["val_acc"])
    assert refs[0]["run_id"] == best.id  # the first pick is the best single trial


def test_top_k_ranks_by_the_stored_validation_metric(runs, store):
    by_loss = sorted(runs, key=lambda run: run.metrics["val_loss"])
    assert [ref["run_id"] for ref in select_members(runs, "top_k", 2, "val_loss", store=store)] == [
        r.id for r in by_loss[:2]
    ]
    with pytest.raises(SpecError, match="at most") as error:
        select_members(runs, "top_k", len(runs) + 1, store=store)
    assert error.value.loc == ("size",)


def test_a_run_stored_before_predictions_were_kept_is_named(runs, store, tmp_path):
    old = Run(id="old-run", job_id="old", seed=0, metrics=runs[0].metrics, weights_path=str(tmp_path / "w"))
    with pytest.raises(SpecError, match="run old-run has no stored validation predictions") as error:
        select_members([*runs, old], "greedy", 2, store=store)
    assert error.value.loc == ("select",)
    assert len(select_members([*runs, old], "top_k", 2, store=store)) == 2  # its metrics still rank it


def test_candidates_validated_on_different_splits_are_refused(runs, store, tmp_path):
    probs, labels = load_val_predictions(val_predictions_path(store.at(runs[0].weights_path)))
    # A row from before keys: its files by absolute path, which the store still reads.
    other = Run(
        id="other-split", job_id="other", seed=0, metrics={}, weights_path=str(tmp_path / "w.safetensors")
    )
    save_val_predictions(val_predictions_path(Path(other.weights_path)), probs, labels.roll(1), {})
    with pytest.raises(SpecError, match="other-split were validated on different splits") as error:
        select_members([*runs, other], "greedy", 2, store=store)
    assert error.value.loc == ("from_sweep",)
