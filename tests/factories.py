"""Factories for job specs used across the tests, and the reporter the training loop's tests hand it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.spec import JobSpec
from store.states import StopReason

if TYPE_CHECKING:
    from store.streams import Point

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


def job_spec(*bases: dict[str, Any], **parts: Any) -> JobSpec:
    """lenet_spec() as the JobSpec the worker's code takes: each base's top-level parts, then `parts`,
    replace its own (a file's tests share their base; `training(...)` makes a training part)."""
    merged: dict[str, Any] = {}
    for base in (*bases, parts):
        merged |= base
    return JobSpec.model_validate(lenet_spec(**merged))


class Recorder:
    """A reporter for the training loop called directly: keeps the curve points and, given a directory,
    writes each epoch's checkpoint there as the worker's reporter does; given `stop_after_reports`, asks
    the loop to stop (cancelled) at that report."""

    def __init__(self, directory: Path | None = None, stop_after_reports: int | None = None) -> None:
        self.directory = directory
        self.stop_after_reports = stop_after_reports
        self.points: list[Point] = []
        self.reports = 0
        self.checkpoints: dict[int, Path] = {}  # epoch -> its checkpoint's path

    @property
    def losses(self) -> list[float]:
        return [point.value for point in self.points if point.name == "train_loss"]

    def report(self, points: list[Point], progress: dict[str, float]) -> StopReason | None:
        self.points += points
        self.reports += bool(points)  # not the empty keep-alive reports made while a model compiles
        if self.stop_after_reports is not None and self.reports >= self.stop_after_reports:
            return StopReason.CANCELLED
        return None

    def epoch_end(self, state, metrics: dict[str, float], progress: dict[str, float]) -> StopReason | None:
        # Imported here: the API tests use this file's spec factories and need no torch.
        from store.artifacts import save_checkpoint

        if self.directory is not None:
            # Written at once: the state's tensors are the live model's, which training goes on changing.
            self.checkpoints[state.epoch] = self.directory / f"checkpoint-{state.epoch}.safetensors"
            save_checkpoint(self.checkpoints[state.epoch], state)
        return None
