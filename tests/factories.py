"""Factories for job specs used across the tests."""

from __future__ import annotations

import copy
from typing import Any

BASE_SPEC: dict[str, Any] = {
    "name": "lenet5-sgd",
    "dataset": {"name": "digits"},
    "model": {"arch": "lenet5"},
    "optimizer": {"type": "sgd", "lr": 0.1},
    "lr_schedule": {"type": "constant"},
    "training": {"epochs": 2, "batch_size": 32, "seed": 0},
}


def lenet_spec(**overrides: Any) -> dict[str, Any]:
    """A small valid job (lenet5 on digits, plain SGD); top-level parts can be replaced."""
    return copy.deepcopy(BASE_SPEC) | overrides


def training(**fields: Any) -> dict[str, Any]:
    return BASE_SPEC["training"] | fields
