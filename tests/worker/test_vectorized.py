"""Ensemble members trained together (vmap) or one after another, called directly (no service)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.datasets import load_splits
from models.optim import apply_momentum_ramp, build_optimizer, build_schedule
from store.artifacts import load_checkpoint
from tests.factories import Recorder, job_spec, training
from worker.reporter import Diverged, Stopped
from worker.training import train
from worker.vectorized import choose_strategy, train_members, train_sequential

CPU = torch.device("cpu")
# vmap's batched convolutions and matrix products sum in another order than one member's do. After the 80
# steps below (momentum, weight decay, batch norm) the weights differed by at most 5e-6 (relative 3e-4 on
# weights near zero), so this tolerance holds with room. Adam, which divides by the gradients' running
# magnitude, amplifies such differences on parameters with tiny gradients to ~2e-5.
SAME_WEIGHTS = {"rtol": 1e-4, "atol": 1e-5}


# Two lenet5 members with everything that keeps state across steps: momentum (with its ramp), weight decay,
# a decaying lr, batch norm statistics and an EMA of the weights. The tests replace parts of it.
STATEFUL = {
    "model": {"arch": "lenet5", "batchnorm": True},
    "optimizer": {
        "type": "momentum",
        "lr": 0.02,
        "momentum": 0.9,
        "momentum_ramp": {"start": 0.5, "epochs": 1},
    },
    "lr_schedule": {"type": "exponential", "k": 0.2, "unit": "epoch"},
    "regularization": {"weight_decay": 5e-4},
    "training": training(epochs=2, batch_size=32, seed=0),
    "ensemble": {"members": 2, "param_averaging": "ema", "ema_decay": 0.9},
}


def recorders(directory, k: int) -> list[Recorder]:
    paths = [directory / f"member-{member}" for member in range(k)]
    for path in paths:
        path.mkdir()
    return [Recorder(path) for path in paths]


def assert_same_weights(actual: nn.Module | None, expected: nn.Module | None, exact: bool = False) -> None:
    expected_state, actual_state = expected.state_dict(), actual.state_dict()
    assert actual_state.keys() == expected_state.keys()
    for name, tensor in expected_state.items():
        tolerance = {"rtol": 0, "atol": 0} if exact else SAME_WEIGHTS
        torch.testing.assert_close(actual_state[name], tensor, **tolerance, msg=name)


def assert_same_metrics(actual: dict, expected: dict, splits) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        if name.endswith("acc"):  # one sample either way
            assert actual[name] == pytest.approx(value, abs=1.5 / len(splits.val[0])), name
        else:
            assert actual[name] == pytest.approx(value, rel=1e-4), name


@pytest.fixture(scope="module")
def splits():
    return load_splits(job_spec(STATEFUL).dataset, job_spec(STATEFUL).model)


@pytest.fixture(scope="module")
def vmapped(splits, tmp_path_factory):
    reporters = recorders(tmp_path_factory.mktemp("vmap"), 2)
    return train_members(job_spec(STATEFUL), splits, reporters, device=CPU), reporters


@pytest.fixture(scope="module")
def sequential(splits, tmp_path_factory):
    reporters = recorders(tmp_path_factory.mktemp("sequential"), 2)
    return train_sequential(job_spec(STATEFUL), splits, reporters, device=CPU), reporters


def test_vmap_trains_each_member_as_its_own_run_would(vmapped, sequential, splits):
    (together, _), (apart, _) = vmapped, sequential
    assert [r.engine.vectorized for r in together] == [True, True]
    assert [r.engine.vectorized for r in apart] == [False, False]
    for member in (0, 1):
        assert_same_weights(together[member].model, apart[member].model)
        assert_same_weights(together[member].averaged_model, apart[member].averaged_model)
        assert_same_metrics(together[member].metrics, apart[member].metrics, splits)
        assert together[member].steps == apart[member].steps == 2 * math.ceil(len(splits.train[0]) / 32)
    # Two members, two seeds: different networks.
    assert not torch.allclose(together[0].model[0].weight, together[1].model[0].weight)


def test_each_member_reports_its_own_curve(vmapped, sequential):
    (_, together), (_, apart) = vmapped, sequential
    for member in (0, 1):
        ours, theirs = together[member].points, apart[member].points
        assert [(p.step, p.epoch, p.name) for p in ours] == [(p.step, p.epoch, p.name) for p in theirs]
        assert {p.name for p in ours} == {"train_loss", "lr"}
        assert [p.value for p in ours] == pytest.approx([p.value for p in theirs], rel=1e-4)
        assert sorted(together[member].checkpoints) == [1, 2]
    assert together[0].points[0].value != together[1].points[0].value


def test_a_vmap_checkpoint_resumes_in_plain_train(vmapped, sequential, splits):
    (together, reporters), (apart, _) = vmapped, sequential
    checkpoint = load_checkpoint(reporters[1].checkpoints[1])
    assert checkpoint.model.keys() == apart[1].model.state_dict().keys()  # a plain model's state dict
    resumed = train(job_spec(STATEFUL).member_spec(1), splits, device=CPU, resume=checkpoint)
    for uninterrupted in (together[1], apart[1]):
        assert_same_weights(resumed.model, uninterrupted.model)
        assert_same_weights(resumed.averaged_model, uninterrupted.averaged_model)
        assert_same_metrics(resumed.metrics, uninterrupted.metrics, splits)


def test_member_checkpoints_resume_a_vmap_attempt(vmapped, sequential, splits):
    for (uninterrupted, reporters), exact in ((vmapped, True), (sequential, False)):
        checkpoints = [load_checkpoint(reporter.checkpoints[1]) for reporter in reporters]
        resumed = train_members(
            job_spec(STATEFUL), splits, [Recorder(), Recorder()], device=CPU, resumes=checkpoints
        )
        for member in (0, 1):
            # From its own checkpoints vmap continues bit for bit; from train()'s, to float tolerance.
            assert_same_weights(resumed[member].model, uninterrupted[member].model, exact)
            assert_same_weights(resumed[member].averaged_model, uninterrupted[member].averaged_model, exact)
            assert_same_metrics(resumed[member].metrics, uninterrupted[member].metrics, splits)


@pytest.mark.parametrize("mode", ["inverted", "vanilla"])
def test_dropout_draws_masks_per_member_and_resumes_exactly(tmp_path, splits, mode):
    spec = job_spec(
        STATEFUL,
        model={"arch": "lenet5"},
        regularization={"dropout": 0.3, "dropout_mode": mode},
        training={"epochs": 2, "batch_size": 128, "seed": 0},
        ensemble={"members": 2},
    )
    reporters = recorders(tmp_path, 2)
    whole = train_members(spec, splits, reporters, device=CPU)
    assert min(result.metrics["test_acc"] for result in whole) > 0.3  # ten classes: it learned something
    checkpoints = [load_checkpoint(reporter.checkpoints[1]) for reporter in reporters]
    resumed = train_members(spec, splits, [Recorder(), Recorder()], device=CPU, resumes=checkpoints)
    for member in (0, 1):  # the dropout generator's state is part of every member's checkpoint
        assert_same_weights(resumed[member].model, whole[member].model, exact=True)


def test_a_diverging_member_stops_them_all_and_is_named(splits):
    spec = job_spec(
        STATEFUL,
        model={"arch": "lenet5", "activation": "relu"},
        optimizer={"type": "sgd", "lr": 10.0},
        lr_schedule={"type": "constant"},
        regularization={},
        training={"epochs": 1, "batch_size": 64, "seed": 0},
        ensemble={"members": 4},
    )
    members = [3, 1]  # any of the job's members, in any order: a worker may train what is left of a job
    steps = {}
    for member in members:
        with pytest.raises(Diverged) as alone:
            train(spec.member_spec(member), splits, device=CPU)
        steps[member] = alone.value.step
    assert steps[1] < steps[3] <= 10  # both within the first report: the earlier one is reported
    with pytest.raises(Diverged) as together:
        train_members(spec, splits, [Recorder(), Recorder()], members=members, device=CPU)
    assert (together.value.member, together.value.step) == (1, steps[1])
    assert f"member 1 diverged at step {steps[1]}: the training loss is" in str(together.value)


def test_any_member_asking_to_stop_stops_them_all(splits):
    with pytest.raises(Stopped, match="cancelled"):
        train_members(job_spec(STATEFUL), splits, [Recorder(), Recorder(stop_after_reports=1)], device=CPU)


OPTIMIZERS = [
    {"type": "sgd", "lr": 0.1},
    {"type": "momentum", "lr": 0.1, "momentum": 0.9, "momentum_ramp": {"start": 0.5, "epochs": 2}},
    {"type": "nesterov", "lr": 0.1, "momentum": 0.9, "momentum_ramp": {"start": 0.0, "epochs": 2}},
    {"type": "adagrad", "lr": 0.1},
    {"type": "rmsprop", "lr": 0.01},
    {"type": "adam", "lr": 0.01},
]


@pytest.mark.parametrize("optimizer_spec", OPTIMIZERS, ids=[o["type"] for o in OPTIMIZERS])
def test_one_optimizer_over_stacked_members_is_one_optimizer_per_member(optimizer_spec):
    # Every update rule here is elementwise, weight decay and the momentum ramp included, so stacking the
    # members' parameters changes nothing: which is what lets vmap train K members with one optimizer.
    torch.manual_seed(0)
    members = [[torch.randn(3, 4, requires_grad=True), torch.randn(4, requires_grad=True)] for _ in range(3)]
    stacked = [torch.stack(tensors).detach().requires_grad_() for tensors in zip(*members, strict=True)]
    schedule_spec = {"type": "inverse_time", "k": 0.5, "unit": "step"}

    def optimizer_and_schedule(params):
        optimizer = build_optimizer(optimizer_spec, params, weight_decay=0.01)
        return optimizer, build_schedule(schedule_spec, optimizer, steps_per_epoch=2)

    apart = [optimizer_and_schedule(params) for params in members]
    together = optimizer_and_schedule(stacked)
    for step in range(6):
        grads = [[torch.randn_like(p) for p in params] for params in members]
        for (optimizer, schedule), params, member_grads in zip(apart, members, grads, strict=True):
            apply_momentum_ramp(optimizer, optimizer_spec, step / 2)
            for param, grad in zip(params, member_grads, strict=True):
                param.grad = grad
            optimizer.step()
            schedule.step()
        optimizer, schedule = together
        apply_momentum_ramp(optimizer, optimizer_spec, step / 2)
        for index, param in enumerate(stacked):
            param.grad = torch.stack([member_grads[index] for member_grads in grads])
        optimizer.step()
        schedule.step()
    for index, param in enumerate(stacked):
        torch.testing.assert_close(param, torch.stack([params[index] for params in members]), rtol=0, atol=0)


def strategy_of(device: str = "cpu", **fields) -> str:
    spec = job_spec(
        dataset=fields.pop("dataset", {"name": "digits"}),
        model=fields.pop("model", {"arch": "lenet5"}),
        optimizer={"type": "sgd", "lr": 0.1},
        training=training(**{"batch_size": 8} | fields.pop("training", {})),
        ensemble={"members": 4} | fields.pop("ensemble", {}),
    )
    return choose_strategy(spec, torch.device(device))


def test_the_strategy_chooser_follows_the_measurements():
    # Explicit strategies are honoured: vmap supports everything a job can ask for.
    for strategy in ("fanout", "vmap", "sequential"):
        assert strategy_of(ensemble={"strategy": strategy}, training={"batch_size": 256}) == strategy
    assert strategy_of(model={"arch": "lenet5", "batchnorm": True}, ensemble={"strategy": "vmap"}) == "vmap"
    assert strategy_of(ensemble={"members": 1}) == "sequential"  # one member: it trains in its own task
    # CPU: vmap only for tiny batches and several members.
    assert strategy_of(training={"batch_size": 1}) == "vmap"
    assert strategy_of(training={"batch_size": 8}) == "vmap"
    assert strategy_of(training={"batch_size": 8}, ensemble={"members": 2}) == "fanout"
    assert strategy_of(training={"batch_size": 64}, ensemble={"members": 8}) == "fanout"
    # CUDA: vmap until one member's batch fills the GPU.
    assert strategy_of("cuda", training={"batch_size": 256}) == "vmap"  # lenet5
    cifar_like = {"name": "synthetic", "channels": 3, "size": 32}
    alexnet = {"dataset": cifar_like, "model": {"arch": "alexnet"}}
    assert strategy_of("cuda", training={"batch_size": 64}, **alexnet) == "vmap"
    assert strategy_of("cuda", training={"batch_size": 256}, **alexnet) == "fanout"
