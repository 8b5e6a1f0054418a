"""Early stopping and best weights (training.early_stopping, training.keep), the loop called directly."""

from __future__ import annotations

import pytest
import torch

from models.cnn import build_model
from models.datasets import load_splits
from store.artifacts import load_checkpoint
from tests.factories import Recorder, job_spec, training
from worker.bookkeeping import evaluate
from worker.training import train
from worker.vectorized import choose_strategy, train_members

CPU = torch.device("cpu")
# LeNet-5 on digits at plain SGD 0.3, 8 epochs, patience 2: val_acc peaks at epoch 3 and does not beat it in
# epochs 4 and 5, so the run stops after epoch 5 (found by running it; the CPU makes it the same every time).
STOPPING = {"metric": "val_acc", "patience": 2}


def stopping_spec(keep: str | None = None, **stopping):
    fields = {"keep": keep} if keep else {}
    return job_spec(
        optimizer={"type": "sgd", "lr": 0.3},
        training=training(epochs=8, batch_size=32, early_stopping=STOPPING | stopping, **fields),
    )


@pytest.fixture(scope="module")
def splits():
    spec = stopping_spec()
    return load_splits(spec.dataset, spec.model)


@pytest.fixture(scope="module")
def stopped(splits, tmp_path_factory):
    """The early-stopped run, keeping its best weights, with every epoch's checkpoint."""
    recorder = Recorder(tmp_path_factory.mktemp("stopped"))
    return train(stopping_spec(), splits, recorder, device=CPU), recorder


def test_keep_defaults_to_best_with_early_stopping_and_last_without():
    assert stopping_spec().training.keep == "best"
    assert job_spec().training.keep == "last"
    assert job_spec().training.early_stopping is None


def test_a_run_that_stops_improving_stops_and_says_when(stopped):
    result, recorder = stopped
    assert (result.metrics["best_epoch"], result.metrics["stopped_epoch"]) == (3, 5)
    assert sorted(recorder.checkpoints) == [1, 2, 3, 4, 5]  # no epoch trained after the stop
    assert result.steps == load_checkpoint(recorder.checkpoints[5]).step


def test_an_improvement_must_beat_the_best_by_more_than_min_delta(splits):
    # No val_acc can beat another by more than 1: the first epoch stays the best, patience 1 ends epoch 2.
    result = train(stopping_spec(patience=1, min_delta=1.0), splits, device=CPU)
    assert (result.metrics["best_epoch"], result.metrics["stopped_epoch"]) == (1, 2)


def test_a_run_that_keeps_improving_trains_every_epoch(splits):
    result = train(stopping_spec(patience=8), splits, device=CPU)
    assert result.metrics["stopped_epoch"] == 8  # present also when it ran to the end


def test_the_best_weights_reproduce_the_best_metric(stopped, splits):
    result, recorder = stopped
    val_loss, val_acc = evaluate(result.model, *splits.val)
    assert val_acc == result.metrics["val_acc"] == result.metrics["best_val_acc"]
    assert val_loss == pytest.approx(result.metrics["val_loss"], rel=1e-5)
    # They are the best epoch's weights, not the last epoch's.
    best_epoch = load_checkpoint(recorder.checkpoints[3]).model
    for name, tensor in result.model.state_dict().items():
        torch.testing.assert_close(tensor, best_epoch[name], rtol=0, atol=0)
    test_loss, test_acc = evaluate(result.model, *splits.test)
    assert (test_acc, test_loss) == (result.metrics["test_acc"], pytest.approx(result.metrics["test_loss"]))


def test_keep_last_keeps_the_stopped_epochs_weights_and_metrics(stopped, splits, tmp_path):
    best, best_recorder = stopped
    recorder = Recorder(tmp_path)
    last = train(stopping_spec(keep="last"), splits, recorder, device=CPU)
    # The same training (keep changes no step), and the same decision to stop.
    assert (last.metrics["best_epoch"], last.metrics["stopped_epoch"]) == (3, 5)
    final = load_checkpoint(recorder.checkpoints[5]).model
    for name, tensor in last.model.state_dict().items():
        torch.testing.assert_close(tensor, final[name], rtol=0, atol=0)
    assert evaluate(last.model, *splits.val)[1] == last.metrics["val_acc"] < best.metrics["val_acc"]
    assert last.metrics["best_val_acc"] == best.metrics["val_acc"]


def test_keep_best_without_early_stopping_trains_every_epoch_and_keeps_the_best(stopped, splits):
    spec = job_spec(
        optimizer={"type": "sgd", "lr": 0.3}, training=training(epochs=5, batch_size=32, keep="best")
    )
    result = train(spec, splits, device=CPU)
    assert "stopped_epoch" not in result.metrics
    assert result.metrics["best_epoch"] == 3
    best, _ = stopped
    for name, tensor in result.model.state_dict().items():
        torch.testing.assert_close(tensor, best.model.state_dict()[name], rtol=0, atol=0)


@pytest.mark.parametrize("epoch", [4, 5], ids=["after-the-best", "at-the-stop"])
def test_a_resumed_run_stops_where_the_uninterrupted_one_did_with_its_weights(stopped, splits, epoch):
    whole, recorder = stopped
    checkpoint = load_checkpoint(recorder.checkpoints[epoch])
    assert checkpoint.best is not None  # the best epoch's weights ride in every checkpoint after it
    resumed = train(stopping_spec(), splits, device=CPU, resume=checkpoint)
    assert resumed.steps == whole.steps
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    assert resumed.metrics == whole.metrics


def test_a_checkpoints_best_weights_load_into_a_plain_model(stopped, splits):
    _, recorder = stopped
    plain = build_model(stopping_spec().model, splits.input_shape, splits.num_classes)
    plain.load_state_dict(load_checkpoint(recorder.checkpoints[5]).best)
    assert evaluate(plain, *splits.val)[1] == load_checkpoint(recorder.checkpoints[3]).extra["best_val_acc"]


def test_averaging_that_never_began_before_the_stop_keeps_no_averaged_weights(splits):
    # Polyak starts at half the epochs (4); the run stops after epoch 2.
    spec = job_spec(
        optimizer={"type": "sgd", "lr": 0.3},
        training=training(epochs=8, batch_size=32, early_stopping={"patience": 1, "min_delta": 1.0}),
        ensemble={"param_averaging": "polyak"},
    )
    result = train(spec, splits, device=CPU)
    assert result.metrics["stopped_epoch"] == 2
    assert result.averaged_model is None and "averaged_test_acc" not in result.metrics


def test_members_that_stop_early_are_not_vectorized(splits):
    spec = job_spec(
        training=training(early_stopping=STOPPING, batch_size=4), ensemble={"members": 8, "strategy": "auto"}
    )
    assert choose_strategy(spec, CPU) == "fanout"  # vmap's choice for 8 members at batch 4, without it
    without = spec.training.model_copy(update={"early_stopping": None})
    assert choose_strategy(spec.model_copy(update={"training": without}), CPU) == "vmap"
    with pytest.raises(ValueError, match="early stopping"):
        train_members(spec, splits, [Recorder(), Recorder()], device=CPU)


def test_vectorized_members_keep_each_their_own_best_weights(splits):
    spec = job_spec(
        optimizer={"type": "sgd", "lr": 0.3},
        training=training(epochs=5, batch_size=32, keep="best"),
        ensemble={"members": 2, "strategy": "vmap"},
    )
    stacked = train_members(spec, splits, [Recorder(), Recorder()], device=CPU)
    for member, result in enumerate(stacked):
        alone = train(spec.member_spec(member), splits, device=CPU)
        assert result.metrics["best_epoch"] == alone.metrics["best_epoch"]
        one_image = 1.5 / len(splits.val[0])
        assert result.metrics["val_acc"] == pytest.approx(alone.metrics["val_acc"], abs=one_image)
        assert evaluate(result.model, *splits.val)[1] == result.metrics["val_acc"]
