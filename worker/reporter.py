"""What the training loop and its reporter say to each other, and the two ways a training ends early.

The loop reports through a `Reporter` and knows nothing of SQL or Redis; the worker's reporter is
worker/reporting.py's JobReporter. A reporter's answer is a StopReason (the loop raises `Stopped`) or None;
a loss that explodes ends the training as `Diverged`.
"""

from __future__ import annotations

import math
from typing import Protocol

from store.artifacts import TrainingState
from store.states import StopReason
from store.streams import Point

# A loss this many times its value at initialisation has left any useful region: a classifier's
# loss starts near ln(classes) and only an exploding run multiplies it a thousandfold.
DIVERGENCE_FACTOR = 1000.0


class Diverged(Exception):
    def __init__(self, step: int, loss: float, initial_loss: float, member: int | None = None) -> None:
        why = (
            "not finite"
            if not math.isfinite(loss)
            else f"{loss:.4g}, over {DIVERGENCE_FACTOR:g}x its initial {initial_loss:.4g}"
        )
        who = "" if member is None else f"member {member} "
        super().__init__(f"{who}diverged at step {step}: the training loss is {why}")
        self.step = step
        self.member = member


class Stopped(Exception):
    """The reporter asked the loop to stop (cancelled, the worker shutting down, or the lease lost)."""

    def __init__(self, reason: StopReason | str) -> None:
        self.reason = StopReason(reason)  # a reporter may answer the plain string, which equals the member
        super().__init__(self.reason)


class Reporter(Protocol):
    def report(self, points: list[Point], progress: dict[str, float]) -> StopReason | None:
        """Takes curve points every few steps; answers a reason to stop, or None."""

    def epoch_end(
        self, state: TrainingState, metrics: dict[str, float], progress: dict[str, float]
    ) -> StopReason | None:
        """Takes the state after each epoch (to checkpoint); answers a reason to stop, or None."""


class NullReporter:
    """Asks for nothing: train() without a reporter."""

    def report(self, points, progress):
        return None

    def epoch_end(self, state, metrics, progress):
        return None
