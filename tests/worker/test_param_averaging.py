"""Polyak and EMA parameter averaging inside one run (spec.ensemble.param_averaging), called directly."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.cnn import build_model
from models.datasets import load_splits
from models.optim import build_optimizer
from models.spec import JobSpec
from store.artifacts import load_checkpoint
from tests.factories import Recorder, job_spec, training
from worker.averaging import AVERAGED_SLOT
from worker.training import epoch_order, train

CPU = torch.device("cpu")
# Small enough to keep every step's weights for the hand-computed averages.
TINY_LAYERS = [
    {"type": "conv", "out_channels": 4, "kernel_size": 3, "stride": 2},
    {"type": "activation", "fn": "relu"},
    {"type": "flatten"},
    {"type": "linear", "out_features": 10},
]
TINY_WITH_BATCHNORM = TINY_LAYERS[:1] + [{"type": "batchnorm"}] + TINY_LAYERS[1:]
# Three epochs of plain SGD on the tiny network, Polyak-averaged; the tests replace parts of it.
AVERAGED = {
    "model": {"layers": TINY_LAYERS},
    "optimizer": {"type": "sgd", "lr": 0.1},
    "training": training(epochs=3, batch_size=128),
    "ensemble": {"param_averaging": "polyak"},
}


def weights_after_each_step(spec: JobSpec, splits) -> list[tuple[int, list[torch.Tensor]]]:
    """(epoch, parameters) after every step of a plain loop with train()'s initial weights and batches."""
    torch.manual_seed(spec.training.seed)
    model = build_model(spec.model, splits.input_shape, splits.num_classes)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    x, y = splits.train
    batch_size = spec.training.batch_size
    history = []
    for epoch in range(spec.training.epochs):
        order = epoch_order(len(x), spec.training.seed, epoch, CPU)
        for batch in range(math.ceil(len(x) / batch_size)):
            idx = order[batch * batch_size : (batch + 1) * batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
            history.append((epoch, [p.detach().clone() for p in model.parameters()]))
    return history


def assert_parameters_close(model: nn.Module, expected: list[torch.Tensor]) -> None:
    for parameter, tensor in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(parameter, tensor, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("averaging", ["polyak", "ema"])
def test_averaged_weights_differ_from_the_raw_ones_and_classify_digits(averaging):
    spec = job_spec(
        AVERAGED,
        model={"arch": "lenet5"},
        ensemble={"param_averaging": averaging, "ema_decay": 0.9},
        optimizer={"type": "momentum", "lr": 0.02, "momentum": 0.9},
        training=training(epochs=3, batch_size=64),
    )
    splits = load_splits(spec.dataset, spec.model)
    result = train(spec, splits, device=CPU)
    raw, averaged = result.model.state_dict(), result.averaged_model.state_dict()
    assert raw.keys() == averaged.keys()  # saved beside the raw weights, it loads into the same network
    assert all(not torch.equal(averaged[name], raw[name]) for name in raw)
    # Ten classes. After 3 epochs the raw weights reach about 0.85; averages of weights from the steep part
    # of the curve lag a little behind them (polyak 0.83, ema 0.85), which longer runs make up.
    assert result.metrics["averaged_test_acc"] > 0.75
    assert result.metrics["averaged_test_loss"] < 0.5 * math.log(10)


def test_polyak_is_the_mean_of_the_weights_after_every_step_from_the_start_epoch():
    spec = job_spec(AVERAGED, ensemble={"param_averaging": "polyak"})  # starts at epochs // 2 = 1
    splits = load_splits(spec.dataset, spec.model)
    history = weights_after_each_step(spec, splits)
    result = train(spec, splits, device=CPU, channels_last=False)
    assert_parameters_close(result.model, history[-1][1])  # the reference loop is train()'s
    averaged = [weights for epoch, weights in history if epoch >= 1]
    assert 0 < len(averaged) < len(history)
    mean = [sum(ws) / len(averaged) for ws in zip(*averaged, strict=True)]
    assert_parameters_close(result.averaged_model, mean)


def test_ema_follows_its_recurrence_from_the_start_epoch():
    decay = 0.8
    spec = job_spec(
        AVERAGED, ensemble={"param_averaging": "ema", "ema_decay": decay, "averaging_start_epoch": 1}
    )
    splits = load_splits(spec.dataset, spec.model)
    history = weights_after_each_step(spec, splits)
    result = train(spec, splits, device=CPU, channels_last=False)
    # Like AveragedModel's: the first averaged step's weights, then ema = decay*ema + (1-decay)*weights.
    steps = [weights for epoch, weights in history if epoch >= 1]
    ema = steps[0]
    for weights in steps[1:]:
        ema = [decay * e + (1 - decay) * w for e, w in zip(ema, weights, strict=True)]
    assert_parameters_close(result.averaged_model, ema)
    assert not torch.allclose(result.averaged_model[-1].weight, result.model[-1].weight, atol=1e-4)


def test_batch_norm_statistics_are_measured_anew_for_the_averaged_weights():
    spec = job_spec(AVERAGED, model={"layers": TINY_WITH_BATCHNORM}, ensemble={"param_averaging": "polyak"})
    splits = load_splits(spec.dataset, spec.model)
    result = train(spec, splits, device=CPU)
    averaged = result.averaged_model
    x = splits.train[0]
    batch_size = spec.training.batch_size
    with torch.no_grad():
        # One pass over the training data in training batches, each batch's mean weighing the same.
        batches = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
        expected = torch.stack([averaged[0](batch).mean((0, 2, 3)) for batch in batches]).mean(0)
    torch.testing.assert_close(averaged[1].running_mean, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(result.model[1].running_mean, expected, atol=1e-3)  # not the raw model's


@pytest.mark.parametrize(
    "ensemble",
    [{"param_averaging": "ema", "ema_decay": 0.9}, {"param_averaging": "polyak", "averaging_start_epoch": 0}],
    ids=["ema", "polyak"],
)
def test_resume_continues_the_average_exactly(tmp_path, ensemble):
    spec = job_spec(
        AVERAGED,
        model={"layers": TINY_WITH_BATCHNORM},
        ensemble=ensemble,
        optimizer={"type": "momentum", "lr": 0.05, "momentum": 0.9},
    )
    splits = load_splits(spec.dataset, spec.model)
    recorder = Recorder(tmp_path)
    whole = train(spec, splits, recorder, device=CPU)
    checkpoint = load_checkpoint(recorder.checkpoints[1])
    # The averages ride in the optimizer's per-parameter state; `model` is still just the network's.
    assert checkpoint.model.keys() == whole.model.state_dict().keys()
    assert all(AVERAGED_SLOT in slots for slots in checkpoint.optimizer["state"].values())
    assert checkpoint.extra["n_averaged"] == math.ceil(len(splits.train[0]) / 128)

    resumed = train(spec, splits, device=CPU, resume=checkpoint)
    for which in ("model", "averaged_model"):
        expected, actual = getattr(whole, which).state_dict(), getattr(resumed, which).state_dict()
        for name, tensor in expected.items():
            assert torch.equal(actual[name], tensor), (which, name)
    assert resumed.metrics == whole.metrics


def test_without_averaging_there_is_no_averaged_model():
    spec = job_spec(
        AVERAGED, ensemble={"param_averaging": "none"}, training=training(epochs=1, batch_size=128)
    )
    result = train(spec, load_splits(spec.dataset, spec.model), device=CPU)
    assert result.averaged_model is None
    assert "averaged_test_acc" not in result.metrics
