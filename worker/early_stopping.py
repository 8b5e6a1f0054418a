"""Early stopping and best weights (spec.training.early_stopping and keep): which epoch a run keeps.

Written here rather than taken from a library: Lightning's and ignite's EarlyStopping are callbacks of their
own trainers' event loops, and the rule itself is a comparison and a counter.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.spec import TrainingSpec


class KeptEpoch:
    """One member's watch over its validation metric, and the epoch whose weights and metrics it keeps.

    After each epoch `update` hears that epoch's metrics: an improvement is better than the best so far by
    more than min_delta (higher val_acc, lower val_loss); `done` once `patience` epochs in a row have not
    improved. With keep "best" it holds a CPU copy of the best epoch's state dict: the worker prunes old
    checkpoints (and the loop does not know where they live), and one model's weights are small beside the
    dataset it trains on. Its state rides in each checkpoint, so a resumed attempt decides as the first would.
    Epochs count from 1, as checkpoints do.
    """

    def __init__(self, training: TrainingSpec, saved: dict[str, Any] | None, weights: dict | None) -> None:
        stopping = training.early_stopping
        self.metric = stopping.metric if stopping else "val_acc"
        self.min_delta = stopping.min_delta if stopping else 0.0
        self.patience = stopping.patience if stopping else None
        self.keep_best = training.keep == "best"
        saved = saved or {}
        self.best_value: float | None = saved.get("best_value")
        self.best_epoch: int | None = saved.get("best_epoch")
        self.last_epoch: int = saved.get("last_epoch", 0)
        self.kept_metrics: dict[str, float] = saved.get("kept_metrics", {})
        self.weights = weights if self.keep_best else None

    def improves(self, value: float) -> bool:
        if self.best_value is None:
            return True
        if self.metric == "val_loss":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def update(self, epoch: int, metrics: dict[str, float], model: nn.Module) -> None:
        """Epoch `epoch` (from 1) has ended with `metrics`, `model` holding its weights."""
        self.last_epoch = epoch
        improved = self.improves(metrics[self.metric])
        if improved:
            self.best_value, self.best_epoch = metrics[self.metric], epoch
        if improved or not self.keep_best:
            self.kept_metrics = dict(metrics)
        if improved and self.keep_best:
            self.weights = {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}

    @property
    def done(self) -> bool:
        """Patience has run out: no more epochs."""
        return self.patience is not None and self.last_epoch - (self.best_epoch or 0) >= self.patience

    def state(self) -> dict[str, Any]:
        """What a checkpoint's `extra` keeps of it (the weights go into the checkpoint as tensors)."""
        return {
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "last_epoch": self.last_epoch,
            "kept_metrics": self.kept_metrics,
        }

    def summary(self) -> dict[str, int]:
        """The run's metrics it adds: best_epoch (with keep best or early stopping), stopped_epoch (the
        last epoch trained, with early stopping, also when that is the last of `epochs`)."""
        out = {}
        if self.keep_best or self.patience is not None:
            out["best_epoch"] = self.best_epoch
        if self.patience is not None:
            out["stopped_epoch"] = self.last_epoch
        return out

    @torch.no_grad()
    def load_into(self, model: nn.Module) -> None:
        """Give `model` the kept weights: the best epoch's with keep best; with keep last it has them."""
        if self.weights is not None:
            model.load_state_dict(self.weights)
