"""Reporters the benchmarks hand worker.training.train: what they keep of a run besides its result."""

from __future__ import annotations


class ValAccuracies:
    """A reporter that keeps each epoch's validation accuracy."""

    def __init__(self) -> None:
        self.val_acc: list[float] = []

    def report(self, points, progress):
        return None

    def epoch_end(self, state, metrics, progress):
        self.val_acc.append(metrics["val_acc"])
        return None
