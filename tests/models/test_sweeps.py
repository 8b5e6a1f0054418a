"""Sweeps' pure core: the SweepSpec refuses bad spaces at their path, every point becomes a JobSpec
checked like a submitted one, and Optuna's samplers and pruners decide from trials replayed out of
plain records (as the tables store them: JSON, epochs as string keys)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import warnings
from typing import Any

import pytest
from optuna.trial import TrialState
from pydantic import ValidationError

from models.spec import PRESET_DEFAULTS, SpecError
from models.sweeps import (
    SweepSpec,
    TrialRecord,
    best_trial,
    importances,
    next_trial,
    no_trials_left,
    should_prune,
)

BASE = {"dataset": {"name": "digits"}, "model": {"arch": "lenet5"}}
LR = {"optimizer.lr": {"loguniform": [1e-4, 1.0]}}
DROPOUT = {"regularization.dropout": {"uniform": [0.0, 0.9]}}
GRID = {"optimizer.type": {"choice": ["sgd", "adam"]}, "training.batch_size": {"choice": [16, 32, 64]}}


def sweep(space: dict[str, Any], **fields: Any) -> SweepSpec:
    return SweepSpec.model_validate({"base": BASE, "space": space, **fields})


def stored(record: TrialRecord) -> TrialRecord:
    """The record as read back from the tables (a JSON column turns epoch keys into strings); the state is
    its job's, not stored."""
    fields = json.loads(json.dumps(dataclasses.asdict(record) | {"state": None}))
    return TrialRecord(**fields | {"state": record.state})


def accuracy(params: dict[str, Any], epoch: int) -> float:
    """A made-up learning curve: best near lr 1e-2, rising with the epochs; dropout matters little."""
    distance = abs(math.log10(params["optimizer.lr"]) + 2)
    return max(0.05, 0.95 - 0.2 * distance - 0.01 * params.get("regularization.dropout", 0)) * (
        1 - 0.5 / epoch
    )


def run(spec: SweepSpec, sweep_id: str = "s1", epochs: int = 9) -> list[TrialRecord]:
    """The sweep trained one trial at a time on the made-up curve, pruning as it goes."""
    trials: list[TrialRecord] = []
    while (record := next_trial(spec, sweep_id, trials)) is not None:
        trials.append(stored(record))
        for epoch in range(1, epochs + 1):
            record.values[epoch] = accuracy(record.params, epoch)
            trials[-1] = stored(record)
            prune, record.system_attrs = should_prune(spec, sweep_id, trials, record.number)
            if prune:
                break
        record.state = TrialState.PRUNED if prune else TrialState.COMPLETE
        record.value = record.values[epoch]
        trials[-1] = stored(record)
    return trials


def finished(number: int, params: dict[str, Any], curve: list[float], **attrs: Any) -> TrialRecord:
    values = dict(enumerate(curve, start=1))
    return TrialRecord(number, params, TrialState.COMPLETE, curve[-1], values, attrs)


# ---------------------------------------------------------------- sampling


def test_grid_enumerates_each_point_once_then_stops():
    spec = sweep(GRID, method="grid")
    assert spec.grid_size() == 6 and spec.max_trials == 6
    trials = []
    while (record := next_trial(spec, "g", trials)) is not None:
        record.state, record.value = TrialState.COMPLETE, 0.5
        trials.append(stored(record))
    points = [tuple(t.params.values()) for t in trials]
    assert sorted(points, key=str) == sorted(itertools.product(["sgd", "adam"], [16, 32, 64]), key=str)


def test_parallel_grid_asks_never_repeat_a_point():
    spec = sweep(GRID, method="grid", parallelism=6)
    trials: list[TrialRecord] = []
    for _ in range(6):  # every trial still running when the next is asked for
        trials.append(stored(next_trial(spec, "g", trials)))
    assert len({tuple(t.params.values()) for t in trials}) == 6
    assert next_trial(spec, "g", trials) is None and no_trials_left(spec, trials)
    assert not no_trials_left(spec, trials[:5])


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_the_same_seed_draws_the_same_points(method):
    def points(seed: int) -> list[tuple]:
        spec = sweep(LR | DROPOUT, method=method, max_trials=8, seed=seed)
        return [tuple(t.params.values()) for t in run(spec, epochs=2)]

    first = points(7)
    assert points(7) == first and len(set(first)) == 8
    assert points(8) != first


def test_random_points_do_not_depend_on_what_is_running():
    spec = sweep(LR, method="random", max_trials=4)
    running: list[TrialRecord] = []
    for _ in range(4):
        running.append(stored(next_trial(spec, "r", running)))
    one_at_a_time = run(spec, sweep_id="r", epochs=1)
    assert [t.params for t in running] == [t.params for t in one_at_a_time]


def test_tpe_moves_towards_the_best_after_its_random_start():
    trials = run(sweep(LR, method="tpe", max_trials=16, seed=3), epochs=1)
    distance = [abs(math.log10(t.params["optimizer.lr"]) + 2) for t in trials]
    assert sum(distance[8:]) / 8 < sum(distance[:4]) / 4


# ---------------------------------------------------------------- pruning

GOOD = [0.6, 0.8, 0.85, 0.9]


def test_median_prunes_a_clearly_bad_trial_and_keeps_a_good_one():
    spec = sweep(LR, early_stopping={"type": "median"})
    done = [finished(n, {"optimizer.lr": 0.01}, GOOD) for n in range(3)]
    bad = TrialRecord(3, {"optimizer.lr": 0.5}, TrialState.RUNNING, values={1: 0.1, 2: 0.12})
    good = TrialRecord(3, {"optimizer.lr": 0.02}, TrialState.RUNNING, values={1: 0.6, 2: 0.82})
    assert should_prune(spec, "m", [*done, bad], 3)[0] is True
    assert should_prune(spec, "m", [*done, good], 3)[0] is False
    first_epoch = TrialRecord(3, {"optimizer.lr": 0.5}, TrialState.RUNNING, values={1: 0.1})
    assert should_prune(spec, "m", [*done, first_epoch], 3)[0] is False  # n_warmup_steps 2


def test_asha_prunes_a_bad_trial_at_its_first_rung_and_keeps_a_good_one():
    spec = sweep(LR, method="random", early_stopping={"type": "asha"})
    trials: list[TrialRecord] = []
    for number, top in enumerate([0.7, 0.8, 0.9]):  # each better than the last: none is pruned
        record = TrialRecord(number, {"optimizer.lr": 0.01}, TrialState.RUNNING)
        trials.append(record)
        for epoch in range(1, 4):
            record.values[epoch] = top * epoch / 3
            prune, record.system_attrs = should_prune(spec, "a", trials, number)
            assert not prune
        record.state, record.value = TrialState.COMPLETE, top
    assert {"completed_rung_0", "completed_rung_1"} <= trials[-1].system_attrs.keys()
    bad = TrialRecord(3, {"optimizer.lr": 0.9}, TrialState.RUNNING, values={1: 0.01})
    good = TrialRecord(3, {"optimizer.lr": 0.01}, TrialState.RUNNING, values={1: 0.5})
    assert should_prune(spec, "a", [*trials, bad], 3) == (True, {"completed_rung_0": 0.01})
    assert should_prune(spec, "a", [*trials, good], 3)[0] is False
    # The pruner's memory is the stored attrs: without them the bad trial has no one to lose to.
    forgetful = [dataclasses.replace(t, system_attrs={}) for t in trials]
    assert should_prune(spec, "a", [*forgetful, bad], 3)[0] is False


def test_hyperband_prunes_some_trials_of_a_sweep():
    spec = sweep(LR, method="random", max_trials=12, early_stopping={"type": "hyperband"})
    assert spec.early_stopping.max_resource == 10  # the base's epochs
    trials = run(spec, epochs=9)
    states = [t.state for t in trials]
    assert len(trials) == 12 and TrialState.PRUNED in states and TrialState.COMPLETE in states


def test_no_early_stopping_never_prunes():
    spec = sweep(LR)
    bad = TrialRecord(3, {"optimizer.lr": 0.5}, TrialState.RUNNING, values={1: 0.0, 2: 0.0})
    done = [finished(n, {"optimizer.lr": 0.01}, GOOD) for n in range(3)]
    assert should_prune(spec, "n", [*done, bad], 3) == (False, {})


def test_replaying_the_returned_records_repeats_every_decision():
    spec = sweep(LR | DROPOUT, max_trials=10, early_stopping={"type": "asha"})
    trials = run(spec, epochs=9)
    assert [t.state for t in trials] == [t.state for t in run(spec, epochs=9)]
    assert next_trial(spec, "s1", trials[:6]) == next_trial(spec, "s1", [stored(t) for t in trials[:6]])


# ---------------------------------------------------------------- importances and the best


def test_importances_rank_the_path_that_matters():
    trials = run(sweep(LR | DROPOUT, method="random", max_trials=8), epochs=1)
    shares = importances(sweep(LR | DROPOUT), "s1", trials)
    assert shares.keys() == {"optimizer.lr", "regularization.dropout"}
    assert math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6)
    assert shares["optimizer.lr"] > shares["regularization.dropout"]
    assert importances(sweep(LR | DROPOUT), "s1", trials) == shares  # seeded: it repeats
    assert importances(sweep(LR | DROPOUT), "s1", trials[:1]) is None
    level = [dataclasses.replace(t, value=0.5) for t in trials]
    assert importances(sweep(LR | DROPOUT), "s1", level) is None  # nothing to explain


def test_best_trial_by_either_objective_ties_to_the_lower_number():
    trials = [
        TrialRecord(0, {"optimizer.lr": 0.1}, TrialState.COMPLETE, 0.5),
        TrialRecord(1, {"optimizer.lr": 0.1}, TrialState.COMPLETE, 0.9),
        TrialRecord(2, {"optimizer.lr": 0.1}, TrialState.COMPLETE, 0.9),
        TrialRecord(3, {"optimizer.lr": 0.1}, TrialState.PRUNED, 0.99),
        TrialRecord(4, {"optimizer.lr": 0.1}, TrialState.RUNNING),
    ]
    assert best_trial(sweep(LR), trials).number == 1
    assert best_trial(sweep(LR, objective="val_loss"), trials).number == 0
    assert best_trial(sweep(LR), trials[3:]) is None


# ---------------------------------------------------------------- bad spaces: 422 at their path


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"space": {"optimizr.lr": {"uniform": [0.1, 1]}}}, ("space", "optimizr.lr")),
        ({"space": {"optimizer.lrr": {"uniform": [0.1, 1]}}}, ("space", "optimizer.lrr")),
        ({"space": {"optimizer.lr": {"choice": []}}}, ("space", "optimizer.lr", "choice")),
        ({"space": {"optimizer.lr": {"uniform": [1, 0.1]}}}, ("space", "optimizer.lr", "uniform")),
        ({"space": {"training.epochs": {"int": [5, 2]}}}, ("space", "training.epochs", "int")),
        ({"space": {"optimizer.lr": {"loguniform": [0, 1]}}}, ("space", "optimizer.lr", "loguniform")),
        ({"space": {"optimizer.lr": {"normal": [0, 1]}}}, ("space", "optimizer.lr")),
        ({"space": LR, "method": "grid"}, ("space", "optimizer.lr")),
        ({"space": GRID, "method": "grid", "max_trials": 7}, ("max_trials",)),
        ({"space": LR, "max_trials": 4, "parallelism": 5}, ("parallelism",)),
        ({"space": {"optimizer": {"choice": [None]}, **LR}}, ("space", "optimizer.lr")),
        (
            {"space": LR, "early_stopping": {"type": "median", "reduction_factor": 2}},
            ("early_stopping", "reduction_factor"),
        ),
        ({"space": LR, "objective": "test_acc"}, ("objective",)),
        ({"space": LR, "base": {**BASE, "ensemble": {"members": 3}}}, ("base", "ensemble", "members")),
        ({"space": {"ensemble.members": {"int": [1, 3]}}}, ("space", "ensemble.members")),
        ({"space": {"name": {"choice": ["a", "b"]}}}, ("space", "name")),
        (
            {"space": LR, "base": {**BASE, "optimizer": {"type": "sgd", "lr": -1}}},
            ("base", "optimizer", "sgd", "lr"),
        ),
    ],
)
def test_a_bad_sweep_is_refused_at_its_path(fields, loc):
    with pytest.raises(ValidationError) as refused:
        SweepSpec.model_validate({"base": BASE, **fields})
    assert loc in [tuple(error["loc"]) for error in refused.value.errors()]


def test_an_unknown_path_names_what_is_there():
    with pytest.raises(ValidationError, match="did you mean 'lr'"):
        sweep({"optimizer.lrr": {"uniform": [0.1, 1]}})


def test_paths_reach_any_member_of_a_union_and_list_items():
    layers = {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10}]}
    spec = SweepSpec.model_validate(
        {
            "base": {**BASE, "model": layers},
            "space": {
                "optimizer.momentum": {"uniform": [0.5, 0.99]},
                "model.layers.1.out_features": {"int": [10, 12]},
            },
        }
    )
    assert spec.trial_spec({"model.layers.1.out_features": 12}, 0).model.layers[1].out_features == 12


def test_a_space_whose_every_point_is_invalid_is_refused_by_check_points():
    for method in ("grid", "random"):
        spec = sweep({"regularization.dropout": {"choice": [1.5, 2.0]}}, method=method)
        with pytest.raises(SpecError) as refused:
            spec.check_points()
        assert refused.value.loc == ("space", "regularization.dropout")
    spec = sweep({"optimizer.type": {"choice": ["sgd", "adamw"]}, **LR})  # some points run: accepted
    spec.check_points()


def test_check_points_takes_the_callers_own_check():
    def too_slow(spec):
        if spec.training.batch_size < 64:
            raise SpecError(("training", "batch_size"), "too slow")

    sweep({"training.batch_size": {"int": [8, 128]}}).check_points(too_slow)
    with pytest.raises(SpecError) as refused:
        sweep({"training.batch_size": {"int": [8, 32]}, **LR}).check_points(too_slow)
    assert refused.value.loc == ("space", "training.batch_size")


# ---------------------------------------------------------------- trial specs


def test_each_point_gets_its_optimizers_own_preset_lr():
    spec = SweepSpec.model_validate(
        {
            "base": {**BASE, "model": {"arch": "alexnet"}},
            "space": {"optimizer.type": {"choice": ["sgd", "adam"]}},
        }
    )
    for kind in ("sgd", "adam"):
        trial = spec.trial_spec({"optimizer.type": kind}, 0)
        assert trial.optimizer.type == kind and trial.optimizer.lr == PRESET_DEFAULTS["alexnet"].lr[kind]
    reloaded = SweepSpec.model_validate(spec.model_dump(mode="json"))  # as stored and read back
    assert reloaded.trial_spec({"optimizer.type": "sgd"}, 0) == spec.trial_spec({"optimizer.type": "sgd"}, 0)


@pytest.mark.parametrize("stopping", [None, "median", "asha", "hyperband"])
def test_a_stored_sweep_reads_back_the_same(stopping):
    early_stopping = {"type": stopping} if stopping else None
    spec = sweep(GRID, method="grid", max_trials=4, early_stopping=early_stopping, name="n", tags=["t"])
    assert SweepSpec.model_validate(json.loads(spec.model_dump_json())) == spec


def test_a_point_inside_an_omitted_union_keeps_the_bases_member():
    spec = SweepSpec.model_validate({"base": {**BASE, "model": {"arch": "alexnet"}}, "space": LR})
    trial = spec.trial_spec({"optimizer.lr": 0.002}, 0)
    assert (trial.optimizer.type, trial.optimizer.lr) == ("adam", 0.002)


def test_a_trial_spec_is_named_and_tagged_after_its_sweep():
    spec = sweep(LR, name="x" * 120, tags=["lr-hunt"], base={**BASE, "tags": ["digits"]})
    trial = spec.trial_spec({"optimizer.lr": 0.01}, 12)
    assert trial.name.endswith(": trial 12") and len(trial.name) == 120
    assert trial.tags == ["digits", "lr-hunt"]


def test_an_invalid_point_raises_spec_error_at_its_path():
    spec = sweep({"regularization.dropout": {"uniform": [0.0, 0.9]}})
    with pytest.raises(SpecError) as refused:
        spec.trial_spec({"regularization.dropout": 1.5}, 0)
    assert refused.value.loc == ("space", "regularization.dropout")
    spec = sweep(
        {"optimizer.type": {"choice": ["sgd", "adam"]}},
        base={**BASE, "optimizer": {"type": "sgd", "lr": 0.1}},
    )
    spec.trial_spec({"optimizer.type": "adam"}, 0)  # lr carries over: adam takes it
    with pytest.raises(SpecError) as refused:
        spec.trial_spec({"optimizer.type": "adamw"}, 0)
    assert refused.value.loc == ("space", "optimizer.type")


def test_deciding_logs_and_warns_nothing(caplog):
    optuna_logs = logging.getLogger("optuna")
    optuna_logs.addHandler(caplog.handler)  # at the level the module set, not caplog's
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(sweep(LR, max_trials=3, early_stopping={"type": "hyperband"}), epochs=2)
    finally:
        optuna_logs.removeHandler(caplog.handler)
    assert caught == [] and caplog.records == []
