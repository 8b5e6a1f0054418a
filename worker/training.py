"""The training loop. It knows nothing of SQL or Redis: it reports through a `Reporter`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from models.cnn import build_model
from models.datasets import Splits
from models.optim import apply_momentum_ramp, build_optimizer, build_schedule
from models.spec import JobSpec
from store.artifacts import TrainingState
from store.streams import Point

# A loss this many times its value at initialisation has left any useful region: a classifier's
# loss starts near ln(classes) and only an exploding run multiplies it a thousandfold.
DIVERGENCE_FACTOR = 1000.0


class Diverged(Exception):
    def __init__(self, step: int, loss: float, initial_loss: float) -> None:
        why = (
            "not finite"
            if not math.isfinite(loss)
            else f"{loss:.4g}, over {DIVERGENCE_FACTOR:g}x its initial {initial_loss:.4g}"
        )
        super().__init__(f"diverged at step {step}: the training loss is {why}")
        self.step = step


class Stopped(Exception):
    """The reporter asked the loop to stop (cancelled, or the attempt lost its lease)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Reporter(Protocol):
    def report(self, points: list[Point], progress: dict[str, float]) -> str | None:
        """Takes curve points every few steps; answers a reason to stop, or None."""

    def epoch_end(
        self, state: TrainingState, metrics: dict[str, float], progress: dict[str, float]
    ) -> str | None:
        """Takes the state after each epoch (to checkpoint); answers a reason to stop, or None."""


@dataclass
class TrainResult:
    model: nn.Module
    metrics: dict[str, float]
    steps: int
    seconds: float


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    # Derived from (seed, epoch) alone, so a resumed attempt sees the same batches as the first.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


@torch.inference_mode()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a split, one host sync at the end."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss_sum += F.cross_entropy(logits.float(), target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    return loss_sum.item() / len(x), correct.item() / len(x)


class _NullReporter:
    def report(self, points, progress):
        return None

    def epoch_end(self, state, metrics, progress):
        return None


def train(
    spec: JobSpec,
    splits: Splits,
    reporter: Reporter | None = None,
    *,
    device: torch.device | None = None,
    resume: TrainingState | None = None,
    report_every: int = 10,
    attempt: int = 1,
) -> TrainResult:
    reporter = reporter or _NullReporter()
    device = device or pick_device()
    cfg = spec.training
    torch.manual_seed(cfg.seed)
    model = build_model(spec.model, splits.input_shape, splits.num_classes, spec.regularization).to(device)
    optimizer = build_optimizer(
        spec.optimizer, model.parameters(), weight_decay=spec.regularization.weight_decay
    )
    x_train, y_train = (t.to(device) for t in splits.train)
    x_val, y_val = (t.to(device) for t in splits.val)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    schedule = build_schedule(spec.lr_schedule, optimizer, steps_per_epoch)

    start_epoch, step, best_val_acc, elapsed_before = 0, 0, 0.0, 0.0
    initial_loss: float | None = None
    if resume is not None:
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        schedule.load_state_dict(resume.scheduler)
        torch.set_rng_state(resume.rng)
        start_epoch, step = resume.epoch, resume.step
        best_val_acc = resume.extra.get("best_val_acc", 0.0)
        initial_loss = resume.extra.get("initial_loss")
        elapsed_before = resume.extra.get("elapsed_s", 0.0)

    # Losses stay on the device and are read once per report: no host sync on every step.
    window = torch.zeros(report_every, device=device)
    filled = 0
    started = time.perf_counter()
    steps_this_attempt = 0
    metrics: dict[str, float] = {}
    last_train_loss = math.nan

    def progress(epoch_float: float) -> dict[str, float]:
        rate = (time.perf_counter() - started) / max(steps_this_attempt, 1)
        return {
            "epoch": epoch_float,
            "epochs": cfg.epochs,
            "step": step,
            "steps": total_steps,
            "fraction": step / total_steps,
            "eta_s": rate * (total_steps - step),
        }

    def flush(epoch_float: float) -> None:
        nonlocal filled, last_train_loss, initial_loss
        losses = window[:filled].tolist()
        if initial_loss is None:
            initial_loss = losses[0]
        for offset, loss in enumerate(losses):
            if not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * initial_loss:
                raise Diverged(step - filled + offset + 1, loss, initial_loss)
        last_train_loss = sum(losses) / len(losses)
        points = [
            Point(step, epoch_float, "train_loss", last_train_loss, attempt),
            Point(step, epoch_float, "lr", optimizer.param_groups[0]["lr"], attempt),
        ]
        filled = 0
        if reason := reporter.report(points, progress(epoch_float)):
            raise Stopped(reason)

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = epoch_order(len(x_train), cfg.seed, epoch, device)
        for batch in range(steps_per_epoch):
            epoch_float = epoch + batch / steps_per_epoch
            apply_momentum_ramp(optimizer, spec.optimizer, epoch_float)
            idx = order[batch * cfg.batch_size : (batch + 1) * cfg.batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            window[filled] = loss.detach()
            filled += 1
            step += 1
            steps_this_attempt += 1
            if filled == report_every or batch == steps_per_epoch - 1:
                flush(epoch + (batch + 1) / steps_per_epoch)

        val_loss, val_acc = evaluate(model, x_val, y_val)
        best_val_acc = max(best_val_acc, val_acc)
        metrics = {
            "train_loss": last_train_loss,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "best_val_acc": best_val_acc,
            "lr": optimizer.param_groups[0]["lr"],
        }
        state = TrainingState(
            epoch=epoch + 1,
            step=step,
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=schedule.state_dict(),
            rng=torch.get_rng_state(),
            extra={
                "best_val_acc": best_val_acc,
                "initial_loss": initial_loss,
                "elapsed_s": elapsed_before + time.perf_counter() - started,
            },
        )
        if reason := reporter.epoch_end(state, metrics, progress(epoch + 1.0)):
            raise Stopped(reason)

    x_test, y_test = (t.to(device) for t in splits.test)
    test_loss, test_acc = evaluate(model, x_test, y_test)
    metrics |= {"test_loss": test_loss, "test_acc": test_acc}
    return TrainResult(
        model=model, metrics=metrics, steps=step, seconds=elapsed_before + time.perf_counter() - started
    )
