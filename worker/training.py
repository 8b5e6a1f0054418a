"""The training loop. It knows nothing of SQL or Redis: it reports through a `Reporter`.

One loop, `train_trainee`, trains a `Trainee`: one model (`OneModel`, here: `train()`), or K ensemble members
stacked under vmap (worker/vectorized.py: `train_members()`). Seeding, batches, optimizer and schedule, the
momentum ramp, parameter averaging, resume, reporting and the epoch-end states are written once, in the
loop; a trainee holds only what differs: its networks, the parameters the optimizer updates, the forward and
backward that give each member's loss, and how a member's checkpoint maps to its own part of the state.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from models.augment import augment_batch, batch_generator
from models.cnn import build_model
from models.datasets import Splits
from models.optim import apply_momentum_ramp, build_optimizer, build_schedule
from models.spec import JobSpec, TrainingSpec
from store.artifacts import TrainingState
from store.states import StopReason
from worker.averaging import ParameterAverage, averaging_start_epoch, averaging_update, split_averages
from worker.bookkeeping import Bookkeeper, class_probabilities, evaluate
from worker.engine import Engine, EngineFeatures, pick_device
from worker.reporter import NullReporter, Reporter


@dataclass
class TrainResult:
    model: nn.Module
    metrics: dict[str, float]
    steps: int
    seconds: float
    engine: EngineFeatures
    # The Polyak or EMA average of the weights (spec.ensemble.param_averaging), a module like `model`.
    averaged_model: nn.Module | None = None
    # The kept weights' class probabilities on the validation split (N x classes, float32, on the CPU), in
    # the order of splits.val_raw: what ensemble selection scores trials on (models/ensemble_selection.py).
    val_probs: torch.Tensor | None = None


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    # Derived from (seed, epoch) alone, so a resumed attempt sees the same batches as the first.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


def augmented(
    batches: torch.Tensor, seeds: list[int], cfg: TrainingSpec, epoch: int, step: int
) -> torch.Tensor:
    """The members' network-input batches (member x sample x C x H x W), each member's augmented with draws of
    its own, from (its seed, epoch, step) alone: a resumed attempt draws what an uninterrupted run draws."""
    if cfg.augment is None or not (cfg.augment.flip or cfg.augment.translate):
        return batches
    return torch.stack(
        [
            augment_batch(member_batch, cfg.augment, batch_generator(seed, epoch, step))
            for member_batch, seed in zip(batches, seeds, strict=True)  # members, not samples
        ]
    )


def final_metrics(
    model: nn.Module,
    averaged: nn.Module | None,
    train_batches: Callable[[], Iterable[torch.Tensor]],
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    inputs: Callable[[torch.Tensor], torch.Tensor],
    eval_flip: bool = False,
) -> dict[str, float]:
    """The test split's loss and accuracy, and those of the averaged weights when there are any.

    `inputs` makes network inputs of the raw test images, a batch at a time. The averaged module's batch norm
    statistics are the raw model's (averaging leaves buffers alone) and do not fit the averaged weights:
    update_bn measures them again in one pass over `train_batches()`, the training data in training batches
    (it does nothing without batch norm).
    """
    test_loss, test_acc = evaluate(model, x_test, y_test, eval_flip=eval_flip, inputs=inputs)
    metrics = {"test_loss": test_loss, "test_acc": test_acc}
    if averaged is not None:
        update_bn(train_batches(), averaged)
        averaged_loss, averaged_acc = evaluate(averaged, x_test, y_test, eval_flip=eval_flip, inputs=inputs)
        metrics |= {"averaged_test_loss": averaged_loss, "averaged_test_acc": averaged_acc}
    return metrics


def contiguous(model: nn.Module) -> nn.Module:
    # Handed back in the ordinary layout: callers save, average or run it like any other model.
    return model.to(memory_format=torch.contiguous_format)


# ---------------------------------------------------------------- what is trained


def seeded_model(spec: JobSpec, splits: Splits, seed: int, resume: TrainingState | None) -> nn.Module:
    """A member's network as its own run starts it: seeded, so one seed always gives the same weights."""
    torch.manual_seed(seed)
    model = build_model(spec.model, splits.input_shape, splits.num_classes, spec.regularization)
    if resume is not None:
        model.load_state_dict(resume.model)
    return model


class Trainee(Protocol):
    """What the loop trains: K members (K = 1 for one model). Only what differs between strategies is here."""

    device: torch.device
    seeds: list[int]  # each member's seed: the order of its batches
    parameters: list[torch.Tensor]  # what the optimizer updates (and parameter averaging averages)

    @property
    def features(self) -> EngineFeatures: ...

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """Network inputs on the device, in the layout the steps want."""

    def train_mode(self) -> None:
        """Put the networks the steps run in training mode (evaluation left them in eval mode)."""

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's mean loss on its batch x[k], y[k] (member x sample ...), gradients accumulated."""

    def current_models(self) -> list[nn.Module]:
        """Each member's network with its current weights, in the ordinary module form."""

    def averaged_models(self, averages: list[torch.Tensor]) -> list[nn.Module]:
        """Each member's network with `averages` (shaped like `parameters`) in place of its weights."""

    def optimizer_state(self, member_states: list[dict]) -> dict:
        """The members' checkpointed optimizer states as one state dict for this trainee's optimizer."""

    def member_optimizer_states(self, state: dict) -> list[dict]:
        """This trainee's optimizer state dict as each member's own, as its own train() would checkpoint."""


class OneModel:
    """One network; its steps run through an Engine (memory format, bf16 autocast, torch.compile)."""

    def __init__(
        self,
        spec: JobSpec,
        splits: Splits,
        device: torch.device,
        *,
        resume: TrainingState | None,
        channels_last: bool | None,
        keep_alive: Callable[[], StopReason | None],
    ) -> None:
        self.device = device
        self.seeds = [spec.training.seed]
        self.model = seeded_model(spec, splits, spec.training.seed, resume).to(device)
        steps = spec.training.epochs * math.ceil(len(splits.train_raw[1]) / spec.training.batch_size)
        self.engine = Engine(
            self.model,
            device,
            compile=spec.training.compile,
            steps_left=steps - (resume.step if resume is not None else 0),
            channels_last=channels_last,
            keep_alive=keep_alive,
        )
        self.parameters = list(self.model.parameters())  # after the engine has chosen their memory format

    @property
    def features(self) -> EngineFeatures:
        return self.engine.features  # read at the end: a failed compile turns `compiled` off on the way

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        return self.engine.to_device(x)

    def train_mode(self) -> None:
        self.model.train()

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        (x_batch,), (y_batch,) = x, y
        return self.engine.forward_backward(self.engine.to_device(x_batch), y_batch).reshape(1)

    def current_models(self) -> list[nn.Module]:
        return [self.model]

    @torch.no_grad()
    def averaged_models(self, averages: list[torch.Tensor]) -> list[nn.Module]:
        averaged = copy.deepcopy(self.model)  # the raw model's buffers, as AveragedModel(use_buffers=False)
        averaged.zero_grad(set_to_none=True)
        for param, average in zip(averaged.parameters(), averages, strict=True):
            param.copy_(average)
        return [averaged]

    def optimizer_state(self, member_states: list[dict]) -> dict:
        (state,) = member_states
        return state

    def member_optimizer_states(self, state: dict) -> list[dict]:
        return [state]


# ---------------------------------------------------------------- the loop


def train_trainee(
    trainee: Trainee,
    spec: JobSpec,
    splits: Splits,
    reporters: list[Reporter],
    *,
    resumes: list[TrainingState] | None,
    report_every: int,
    attempt: int,
    members: list[int] | None = None,
) -> list[TrainResult]:
    """Train the trainee's members on `splits`; member k reports to reporters[k] and resumes from resumes[k].

    `resumes` is all members' or None, all at one step; `members` names them in errors (None: one model).
    """
    cfg, device = spec.training, trainee.device
    optimizer = build_optimizer(
        spec.optimizer, trainee.parameters, weight_decay=spec.regularization.weight_decay
    )
    # The whole dataset lives on the device as stored (uint8 at native size, mostly); a batch is one indexed
    # slice of it, made network inputs there: resized, normalised, then augmented.
    x_train, y_train = (t.to(device) for t in splits.train_raw)
    x_val, y_val = (t.to(device) for t in splits.val_raw)

    def inputs(x_raw: torch.Tensor) -> torch.Tensor:
        return trainee.to_device(splits.prepare(x_raw))

    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    schedule = build_schedule(spec.lr_schedule, optimizer, steps_per_epoch, epochs=cfg.epochs)
    log = Bookkeeper(
        reporters,
        resumes,
        training=cfg,
        steps_per_epoch=steps_per_epoch,
        report_every=report_every,
        attempt=attempt,
        device=device,
        inputs=inputs,
        members=members,
    )
    averaging_from = averaging_start_epoch(spec)
    # Taken after the resumed weights are in: before its first update an average is a copy of them.
    average = None
    if averaging_from is not None:
        average = ParameterAverage(trainee.parameters, averaging_update(spec.ensemble))
    if resumes is not None:
        optimizer_state, saved_averages = split_averages(
            trainee.optimizer_state([resume.optimizer for resume in resumes])
        )
        optimizer.load_state_dict(optimizer_state)
        schedule.load_state_dict(resumes[0].scheduler)
        # One generator draws every member's dropout masks, so every member's checkpoint holds the same state.
        torch.set_rng_state(resumes[0].rng)
        if average is not None and saved_averages is not None:
            average.restore(saved_averages, resumes[0].extra["n_averaged"])

    for epoch in range(log.start_epoch, cfg.epochs):
        if log.stopped_early:  # also when the attempt resumed from the checkpoint of the epoch it stopped at
            break
        trainee.train_mode()
        orders = torch.stack([epoch_order(len(x_train), seed, epoch, device) for seed in trainee.seeds])
        for batch in range(steps_per_epoch):
            apply_momentum_ramp(optimizer, spec.optimizer, epoch + batch / steps_per_epoch)
            idx = orders[:, batch * cfg.batch_size : (batch + 1) * cfg.batch_size]  # member x sample
            optimizer.zero_grad(set_to_none=True)
            x_batch = augmented(splits.prepare(x_train[idx]), trainee.seeds, cfg, epoch, batch)
            losses = trainee.forward_backward(x_batch, y_train[idx])
            optimizer.step()
            schedule.step()
            if average is not None and epoch >= averaging_from:
                average.update(trainee.parameters)
            if log.record(losses) or batch == steps_per_epoch - 1:
                log.flush(epoch + (batch + 1) / steps_per_epoch, optimizer.param_groups[0]["lr"])

        optimizer_state, extra = optimizer.state_dict(), None
        if average is not None:
            optimizer_state, extra = average.with_averages(optimizer_state)
        log.end_epoch(
            epoch,
            trainee.current_models(),
            trainee.member_optimizer_states(optimizer_state),
            schedule.state_dict(),
            (x_val, y_val),
            optimizer.param_groups[0]["lr"],
            extra,
        )

    x_test, y_test = (t.to(device) for t in splits.test_raw)
    models = trainee.current_models()
    # Stopped early before averaging began, there is nothing averaged: no averaged weights.
    averaging = average is not None and average.count > 0
    averaged = trainee.averaged_models(average.tensors) if averaging else [None] * len(models)
    results = []
    per_member = zip(models, averaged, log.kept, log.best_val_acc, strict=True)
    for model, averaged_model, kept, best_val_acc in per_member:
        # The kept epoch's weights (training.keep), and its metrics: what the stored weights reproduce.
        kept.load_into(model)
        member_metrics = (
            kept.kept_metrics
            | {"best_val_acc": best_val_acc}  # of any epoch, the kept one's or not
            | kept.summary()
            | final_metrics(
                model,
                averaged_model,
                lambda: splits.batches(x_train, cfg.batch_size, inputs),
                x_test,
                y_test,
                inputs,
                log.eval_flip,
            )
        )
        # Here, where the kept model and the device's validation images are at hand: no reload later.
        val_probs = class_probabilities(model, x_val, eval_flip=log.eval_flip, inputs=inputs).cpu()
        results.append(
            TrainResult(
                model=contiguous(model),
                metrics=member_metrics,
                steps=log.step,
                seconds=log.elapsed_s(),
                engine=trainee.features,
                averaged_model=contiguous(averaged_model) if averaged_model is not None else None,
                val_probs=val_probs,
            )
        )
    return results


def train(
    spec: JobSpec,
    splits: Splits,
    reporter: Reporter | None = None,
    *,
    device: torch.device | None = None,
    resume: TrainingState | None = None,
    report_every: int = 10,
    attempt: int = 1,
    channels_last: bool | None = None,
) -> TrainResult:
    """Train `spec` on `splits`; `channels_last` None chooses by `wants_channels_last` (tests force it)."""
    reporter = reporter or NullReporter()
    trainee = OneModel(
        spec,
        splits,
        device or pick_device(),
        resume=resume,
        channels_last=channels_last,
        # No progress while it compiles: an eta from a step that has not finished would be nonsense.
        keep_alive=lambda: reporter.report([], {}),
    )
    resumes = [resume] if resume is not None else None
    (result,) = train_trainee(
        trainee, spec, splits, [reporter], resumes=resumes, report_every=report_every, attempt=attempt
    )
    return result
