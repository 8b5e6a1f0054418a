"""Short trainings with the cosine schedules: they finish, and the curve's lr points follow the schedule."""

from __future__ import annotations

import math

import pytest
import torch

from models.datasets import load_splits
from tests.factories import Recorder, job_spec, training
from worker.training import train

LR0 = 0.1
EPOCHS = 3
BATCH = 64


def cosine(t: float, period: float, eta_min: float) -> float:
    return eta_min + (LR0 - eta_min) * (1 + math.cos(math.pi * t / period)) / 2


def cosine_run(steps_per_epoch, step):
    """Cosine over the whole run per step, floor 0.001, 5 warmup steps: the lr of step `step` (from 0)."""
    return cosine(step, EPOCHS * steps_per_epoch, 0.001) * min(1.0, (step + 1) / 5)


def restarts_by_epoch(steps_per_epoch, step):
    """SGDR per epoch, cycles of 1, 2, 4 epochs: epoch 0 is one, epochs 1-2 the next, 3 starts the third."""
    t_cur, t_i = {0: (0, 1), 1: (0, 2), 2: (1, 2), 3: (0, 4)}[step // steps_per_epoch]
    return cosine(t_cur, t_i, 0.0)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"type": "cosine", "eta_min": 0.001, "unit": "step", "warmup_steps": 5}, cosine_run),
        ({"type": "cosine_restarts", "t_0": 1, "t_mult": 2, "unit": "epoch"}, restarts_by_epoch),
    ],
    ids=["cosine-per-step", "restarts-per-epoch"],
)
def test_a_training_run_follows_its_cosine_schedule(schedule, expected):
    spec = job_spec(
        optimizer={"type": "momentum", "lr": LR0, "momentum": 0.9},
        lr_schedule=schedule,
        training=training(epochs=EPOCHS, batch_size=BATCH),
    )
    splits = load_splits(spec.dataset, spec.model)
    steps_per_epoch = math.ceil(len(splits.train[0]) / BATCH)
    recorder = Recorder()
    result = train(spec, splits, recorder, device=torch.device("cpu"), report_every=1)

    # A point at step s (s steps taken) carries the lr the next step, numbered s from 0, uses.
    lr_points = {point.step: point.value for point in recorder.points if point.name == "lr"}
    assert sorted(lr_points) == list(range(1, EPOCHS * steps_per_epoch + 1))
    assert [lr_points[s] for s in sorted(lr_points)] == pytest.approx(
        [expected(steps_per_epoch, s) for s in sorted(lr_points)], rel=1e-9, abs=1e-15
    )
    assert result.steps == EPOCHS * steps_per_epoch
    assert result.metrics["test_acc"] > 0.5  # it trained
