"""Every preset trains from the minimal spec, its own defaults filled in: past 90% test accuracy on digits,
and without diverging on a slice of Fashion-MNIST. Measured over seeds in docs/benchmarks.md#preset-defaults
(bench/preset_defaults.py)."""

from __future__ import annotations

import math

import pytest
import torch

from models.datasets import load_splits
from models.presets import PRESETS
from models.spec import JobSpec
from tests.idx_files import needs_fashion_mnist
from worker.training import train

CPU = torch.device("cpu")
# AlexNet's minimal spec takes about a minute of a 2-core CPU (0.34 GFLOP per image at 32 px); LeNet-5's
# seconds.
SLOW = {"alexnet"}
# 1,020 training images, 600 for validation and 500 for the test: one epoch is a few dozen steps.
FASHION_SLICE = {"name": "fashion_mnist", "train_fraction": 0.02, "val_fraction": 0.01, "test_fraction": 0.05}


def presets():
    return [pytest.param(arch, marks=pytest.mark.slow) if arch in SLOW else arch for arch in PRESETS]


@pytest.mark.parametrize("arch", presets())
def test_every_presets_minimal_spec_trains_on_digits_past_90_percent(arch):
    spec = JobSpec.model_validate({"dataset": {"name": "digits"}, "model": {"arch": arch}})
    result = train(spec, load_splits(spec.dataset, spec.model), device=CPU)  # raises Diverged if it does
    assert result.metrics["test_acc"] >= 0.9, result.metrics


@needs_fashion_mnist
@pytest.mark.parametrize("arch", presets())
def test_every_presets_defaults_do_not_diverge_on_fashion_mnist(arch):
    # The preset's optimizer and lr, one epoch on a slice of the real benchmark.
    spec = JobSpec.model_validate(
        {"dataset": FASHION_SLICE, "model": {"arch": arch}, "training": {"epochs": 1}}
    )
    result = train(spec, load_splits(spec.dataset, spec.model), device=CPU)
    assert math.isfinite(result.metrics["train_loss"]) and result.metrics["train_loss"] < math.log(10)
    assert result.metrics["test_acc"] > 0.3, result.metrics  # ten classes: well above chance (0.1)
