"""training.compile "auto", the default: the engine times its first eager steps and compiles only where the
steps left repay the compile; the run's engine report says what it chose and why."""

from __future__ import annotations

import torch

from models.datasets import load_splits
from tests.factories import job_spec, training
from worker import engine
from worker.engine import AUTO_TIMED_STEPS, AUTO_WARMUP_STEPS, decide_compile
from worker.training import train

CPU = torch.device("cpu")


def test_the_rule_compiles_when_the_saving_is_twice_the_compile():
    # On the CPU: 30 s to compile, steps 1.15x as fast after.
    assert not decide_compile(2_000, 0.007, CPU).compile  # 14 s eagerly: 1.8 s saved
    long = decide_compile(200_000, 0.007, CPU)  # 1400 s eagerly: 183 s saved
    assert long.compile and "200,000 steps left at 7.0 ms" in long.reason and "183 s" in long.reason


def test_a_short_job_trains_eagerly_and_says_why():
    spec = job_spec()  # lenet5 on digits, 2 epochs of batch 32: 80 steps
    assert spec.training.compile == "auto"
    result = train(spec, load_splits(spec.dataset, spec.model), device=CPU)
    assert not result.engine.compiled
    assert result.engine.compile_reason.startswith("auto: eager: ")
    assert f"{80 - AUTO_WARMUP_STEPS - AUTO_TIMED_STEPS} steps left" in result.engine.compile_reason
    tiny = job_spec(dataset={"name": "digits", "train_fraction": 0.1}, training=training(epochs=1))
    result = train(tiny, load_splits(tiny.dataset, tiny.model), device=CPU)  # 4 steps: nothing to time
    reason = "auto: eager: 4 steps are too few to time, let alone repay compiling"
    assert result.engine.compile_reason == reason


def test_a_job_that_repays_the_compile_switches_to_compiled_steps_with_the_same_numbers(monkeypatch):
    compiled_models = []

    def recording_compile(model, **options):  # torch.compile's place: the same module, so the same numbers
        compiled_models.append(model)
        return model

    monkeypatch.setattr(torch, "compile", recording_compile)
    monkeypatch.setitem(engine.COMPILE_SECONDS, "cpu", 1e-6)  # a compile that costs nothing repays at once
    auto, eager = job_spec(), job_spec(training=training(compile=False))
    splits = load_splits(auto.dataset, auto.model)
    switched, plain = train(auto, splits, device=CPU), train(eager, splits, device=CPU)
    assert switched.engine.compiled and len(compiled_models) == 1
    assert switched.engine.compile_reason.startswith("auto: compiled: 55 steps left")
    assert plain.engine.compile_reason == "compile false in the spec"
    assert switched.metrics == plain.metrics
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(switched.model.state_dict()[name], tensor), name
