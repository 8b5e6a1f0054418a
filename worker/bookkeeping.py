"""What the training loop does around its steps: the curve, divergence, progress and epoch-end states."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from models.augment import mean_over_flip
from models.spec import TrainingSpec
from store.artifacts import TrainingState
from store.states import StopReason
from store.streams import Point
from worker.early_stopping import KeptEpoch
from worker.reporter import DIVERGENCE_FACTOR, Diverged, Reporter, Stopped

# Evaluation's batch: on the 2-core dev CPU lenet5 evaluated Fashion-MNIST's validation split 1.5x as fast
# in batches of 512 as in 1024 (0.22 s against 0.33): the larger batch's activations (19 MB) overflow cache.
EVAL_BATCH_SIZE = 512


def batch_log_probs(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int,
    eval_flip: bool,
    inputs: Callable[[torch.Tensor], torch.Tensor] | None,
) -> Iterator[torch.Tensor]:
    """The model's log-probabilities over x, batch by batch, as evaluation scores them (see evaluate)."""
    model.eval()
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        if inputs is not None:
            xb = inputs(xb)
        if eval_flip:
            yield mean_over_flip(lambda images: model(images).float().softmax(1), xb).log()
        else:
            yield model(xb).float().log_softmax(1)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = EVAL_BATCH_SIZE,
    *,
    eval_flip: bool = False,
    inputs: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a split, one host sync at the end.

    `inputs` makes network inputs of each batch of x (the training loop's x is raw images); None: x is
    network inputs already.
    `eval_flip` (training.augment.eval_flip): of the mean probabilities of each image and its mirror, as
    predictions with ?tta=flip answer; the loss is the cross-entropy of those mean probabilities.
    """
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    batches = batch_log_probs(model, x, batch_size, eval_flip, inputs)
    for log_probs, target in zip(batches, y.split(batch_size), strict=True):
        loss_sum += F.nll_loss(log_probs, target, reduction="sum")
        correct += (log_probs.argmax(1) == target).sum()
    return loss_sum.item() / len(x), correct.item() / len(x)


@torch.inference_mode()
def class_probabilities(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = EVAL_BATCH_SIZE,
    *,
    eval_flip: bool = False,
    inputs: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The probabilities (N, classes, float32, on x's device) that evaluate scores: what ensemble selection
    averages (models/ensemble_selection.py)."""
    batches = batch_log_probs(model, x, batch_size, eval_flip, inputs)
    return torch.cat([log_probs.exp() for log_probs in batches])


class Bookkeeper:
    """What the loop does around its steps: curve, divergence, progress and epoch-end states, per member.

    Step losses stay on the device and are read once per report: no host sync on every step. Each read checks
    them for divergence and sends member i's curve points and progress to reporters[i]. After each epoch every
    member is evaluated, its KeptEpoch hears the epoch's metrics, and its reporter gets a TrainingState of its
    own. `members` names the members in errors (None for a single run); `resumes` holds each member's state
    to resume from, all at the same step.
    """

    def __init__(
        self,
        reporters: list[Reporter],
        resumes: list[TrainingState] | None,
        *,
        training: TrainingSpec,
        steps_per_epoch: int,
        report_every: int,
        attempt: int,
        device: torch.device,
        inputs: Callable[[torch.Tensor], torch.Tensor],
        members: list[int] | None = None,
    ) -> None:
        self.reporters = reporters
        self.inputs = inputs
        self.members = members
        self.epochs = training.epochs
        self.eval_flip = training.augment is not None and training.augment.eval_flip
        self.total_steps = training.epochs * steps_per_epoch
        self.attempt = attempt
        self.window = torch.zeros(report_every, len(reporters), device=device)  # step x member
        self.filled = 0
        extras = [resume.extra for resume in resumes] if resumes else [{} for _ in reporters]
        self.start_epoch, self.step = (resumes[0].epoch, resumes[0].step) if resumes else (0, 0)
        self.initial_loss: list[float | None] = [extra.get("initial_loss") for extra in extras]
        self.best_val_acc: list[float] = [extra.get("best_val_acc", 0.0) for extra in extras]
        best_weights = [resume.best for resume in resumes] if resumes else [None for _ in reporters]
        self.kept = [
            KeptEpoch(training, extra.get("kept_epoch"), weights)
            for extra, weights in zip(extras, best_weights, strict=True)
        ]
        self.last_train_loss = [math.nan] * len(reporters)
        self.elapsed_before = extras[0].get("elapsed_s", 0.0)
        self.started = time.perf_counter()
        self.steps_this_attempt = 0

    def elapsed_s(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def progress(self, epoch_float: float) -> dict[str, float]:
        rate = (time.perf_counter() - self.started) / max(self.steps_this_attempt, 1)
        return {
            "epoch": epoch_float,
            "epochs": self.epochs,
            "step": self.step,
            "steps": self.total_steps,
            "fraction": self.step / self.total_steps,
            "eta_s": rate * (self.total_steps - self.step),
            # Over this attempt, evaluation included: what the worker sustains. Steps, not samples: the
            # loop does not know the batch size; the API's /metrics multiplies by the job's.
            "steps_per_s": self.steps_this_attempt / max(time.perf_counter() - self.started, 1e-9),
        }

    def record(self, losses: torch.Tensor) -> bool:
        """Takes one step's loss per member, still on the device; answers whether a report is due."""
        self.window[self.filled] = losses.detach()
        self.filled += 1
        self.step += 1
        self.steps_this_attempt += 1
        return self.filled == len(self.window)

    def flush(self, epoch_float: float, lr: float) -> None:
        rows = self.window[: self.filled].tolist()
        first_step = self.step - self.filled + 1
        self.initial_loss = [rows[0][m] if loss is None else loss for m, loss in enumerate(self.initial_loss)]
        # Step by step, so the earliest divergence is the one reported, whichever member it happened to.
        for offset, row in enumerate(rows):
            for m, (loss, initial) in enumerate(zip(row, self.initial_loss, strict=True)):
                if not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * initial:
                    member = None if self.members is None else self.members[m]
                    raise Diverged(first_step + offset, loss, initial, member)
        self.filled = 0
        progress = self.progress(epoch_float)
        reasons = []
        for m, reporter in enumerate(self.reporters):
            self.last_train_loss[m] = sum(row[m] for row in rows) / len(rows)
            points = [
                Point(self.step, epoch_float, "train_loss", self.last_train_loss[m], self.attempt),
                Point(self.step, epoch_float, "lr", lr, self.attempt),
            ]
            reasons.append(reporter.report(points, progress))
        self._stop_if_asked(reasons)

    def end_epoch(
        self,
        epoch: int,
        models: list[nn.Module],
        optimizer_states: list[dict],
        scheduler_state: dict,
        val: tuple[torch.Tensor, torch.Tensor],
        lr: float,
        extra: dict | None = None,
    ) -> None:
        """Evaluates member i's `models[i]`, tells its KeptEpoch, and hands reporters[i] its metrics and
        TrainingState."""
        evaluations = [
            evaluate(model, *val, eval_flip=self.eval_flip, inputs=self.inputs) for model in models
        ]
        progress = self.progress(epoch + 1.0)
        rng = torch.get_rng_state()
        reasons = []
        for m, (model, (val_loss, val_acc)) in enumerate(zip(models, evaluations, strict=True)):
            self.best_val_acc[m] = max(self.best_val_acc[m], val_acc)
            metrics = {
                "train_loss": self.last_train_loss[m],
                "val_loss": val_loss,
                "val_acc": val_acc,
                "best_val_acc": self.best_val_acc[m],
                "lr": lr,
            }
            self.kept[m].update(epoch + 1, metrics, model)
            state = TrainingState(
                epoch=epoch + 1,
                step=self.step,
                model=model.state_dict(),
                optimizer=optimizer_states[m],
                scheduler=scheduler_state,
                rng=rng,
                extra={
                    "best_val_acc": self.best_val_acc[m],
                    "initial_loss": self.initial_loss[m],
                    "elapsed_s": self.elapsed_s(),
                    "kept_epoch": self.kept[m].state(),
                }
                | (extra or {}),
                best=self.kept[m].weights,
            )
            reasons.append(self.reporters[m].epoch_end(state, metrics, progress))
        self._stop_if_asked(reasons)

    @property
    def stopped_early(self) -> bool:
        """Every member's patience has run out (worker/early_stopping.py): no more epochs."""
        return all(kept.done for kept in self.kept)

    @staticmethod
    def _stop_if_asked(reasons: list[StopReason | None]) -> None:
        if reason := next((reason for reason in reasons if reason), None):
            raise Stopped(reason)
