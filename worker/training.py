"""The training loop. It knows nothing of SQL or Redis: it reports through a `Reporter`.

One loop, `train_trainee`, trains a `Trainee`: one model (`OneModel`, here: `train()`), or K ensemble members
stacked under vmap (worker/vectorized.py: `train_members()`). Seeding, batches, optimizer and schedule, the
momentum ramp, parameter averaging, resume, reporting and the epoch-end states are written once, in the
loop; a trainee holds only what differs: its networks, the parameters the optimizer updates, the forward and
backward that give each member's loss, and how a member's checkpoint maps to its own part of the state.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import update_bn

from models.cnn import build_model
from models.datasets import Splits
from models.optim import apply_momentum_ramp, build_optimizer, build_schedule
from models.spec import JobSpec
from store.artifacts import TrainingState
from store.states import StopReason
from store.streams import Point
from worker.averaging import ParameterAverage, averaging_start_epoch, averaging_update, split_averages

log = logging.getLogger(__name__)

# A loss this many times its value at initialisation has left any useful region: a classifier's
# loss starts near ln(classes) and only an exploding run multiplies it a thousandfold.
DIVERGENCE_FACTOR = 1000.0
# Below this many channels a BatchNorm2d keeps the network in NCHW on the CPU (see wants_channels_last).
MIN_CPU_NHWC_BATCHNORM_CHANNELS = 16


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


@dataclass(frozen=True)
class EngineFeatures:
    """What sped this run up, for logs and benchmarks."""

    channels_last: bool
    bf16_autocast: bool
    compiled: bool
    vectorized: bool = False  # trained with other members in one vmapped step (worker/vectorized.py)


@dataclass
class TrainResult:
    model: nn.Module
    metrics: dict[str, float]
    steps: int
    seconds: float
    engine: EngineFeatures
    # The Polyak or EMA average of the weights (spec.ensemble.param_averaging), a module like `model`.
    averaged_model: nn.Module | None = None


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    # Derived from (seed, epoch) alone, so a resumed attempt sees the same batches as the first.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


def wants_channels_last(model: nn.Module, device: torch.device) -> bool:
    """NHWC for networks with a convolution: on CUDA always, on the CPU unless batch norm runs slowly on it.

    Training steps on the 2-core dev CPU (oneDNN convolutions either way): lenet5 1.1-1.2x faster (its
    average pools run twice as fast), custom conv stacks 1.05-1.4x, alexnet 1.1x. The exception is
    batch norm over few channels: the CPU's NHWC kernel vectorises across channels, and with 6 or 8 it ran
    1.5-4x slower, which made lenet5 with batchnorm 0.8x overall. On CUDA, cuDNN's NHWC kernels are the
    tensor-core path that bf16 autocast runs on. Without convolutions the input is only flattened.
    """
    if device.type not in ("cpu", "cuda") or not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False
    return device.type == "cuda" or all(
        m.num_features >= MIN_CPU_NHWC_BATCHNORM_CHANNELS
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
    )


def wants_bf16_autocast(device: torch.device) -> bool:
    # bf16 keeps float32's range, so it needs no loss scaling. Only where the hardware has it: emulated
    # on older GPUs, and on this CPU (no AVX512-BF16/AMX) lenet5 steps ran 0.8x as fast under it.
    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


@contextmanager
def reporting_meanwhile(
    report: Callable[[], StopReason | None] | None, every_s: float = 1.0
) -> Iterator[list[StopReason]]:
    """Call `report` every `every_s` seconds from a side thread while the body blocks the loop.

    Yields the list that collects a reason to stop, if `report` answers one. The loop is not reporting
    while the body runs, so the two never use the reporter at the same time.
    """
    reasons: list[StopReason] = []
    if report is None:
        yield reasons
        return
    done = threading.Event()

    def beat() -> None:
        while True:
            if reason := report():
                reasons.append(reason)
                return
            if done.wait(every_s):
                return

    thread = threading.Thread(target=beat, name="trainyard-keep-alive", daemon=True)
    thread.start()
    try:
        yield reasons
    finally:
        done.set()
        thread.join()


class Engine:
    """How training steps run on this device: memory format, precision and compilation, chosen once per job.

    `model` stays the eager module: state_dict, checkpoints and evaluation use it, so their keys and
    numbers do not depend on how the steps ran. Only the training forward goes through `torch.compile`.
    `keep_alive` is called every second while torch.compile's first step blocks the loop; it answers a
    reason to stop, or None.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        *,
        compile: bool,
        channels_last: bool | None = None,
        keep_alive: Callable[[], StopReason | None] | None = None,
    ) -> None:
        self.model = model
        self.keep_alive = keep_alive
        self.device = device
        self.channels_last = wants_channels_last(model, device) if channels_last is None else channels_last
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.autocast = wants_bf16_autocast(device)
        self.compiled = compile
        self.compiled_shape: torch.Size | None = None
        self.net = model

    @property
    def features(self) -> EngineFeatures:
        return EngineFeatures(self.channels_last, self.autocast, self.compiled)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy of a batch, its gradients accumulated into the model."""
        if not self.compiled:
            return self._forward_backward(self.model, x, y)
        if self.compiled_shape is None:
            return self._first_compiled_step(x, y)
        # Only the first batch's shape is compiled; the epoch's shorter last batch runs eagerly, so a job
        # compiles once instead of twice (each ~30 s on the CPU).
        return self._forward_backward(self.net if x.shape == self.compiled_shape else self.model, x, y)

    def _forward_backward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.autocast):
            logits = net(x)
        # The loss in float32 whatever the forward's precision: the curve and the divergence check read it.
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        return loss

    def _first_compiled_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # torch.compile compiles lazily, so a missing C++ compiler or Triton, or an op it cannot lower, shows
        # up here. compile is a speed option with the same numbers either way, and those are problems of the
        # worker's installation that the job's author cannot fix: so the job trains on eagerly, and the
        # warning tells the operator. A fault of the model itself fails again in eager mode, as it should.
        # Compiling takes ~30 s (importing the compiler alone takes seconds), longer than a worker's lease
        # (20 s): without reports meanwhile the job would be presumed lost and handed to another worker.
        try:
            with reporting_meanwhile(self.keep_alive) as reasons:
                self.net = torch.compile(self.model, dynamic=False)
                loss = self._forward_backward(self.net, x, y)
        except Exception as exc:
            self._fall_back(exc)
            self.model.zero_grad(set_to_none=True)
            loss = self._forward_backward(self.model, x, y)
        else:
            self.compiled_shape = x.shape
        if reasons:
            raise Stopped(reasons[0])
        return loss

    def _fall_back(self, exc: Exception) -> None:
        log.warning("torch.compile failed, training in eager mode instead: %s: %s", type(exc).__name__, exc)
        self.net = self.model
        self.compiled = False


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


def final_metrics(
    model: nn.Module,
    averaged: nn.Module | None,
    x_train: torch.Tensor,
    batch_size: int,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
) -> dict[str, float]:
    """The test split's loss and accuracy, and those of the averaged weights when there are any.

    The averaged module's batch norm statistics are the raw model's (averaging leaves buffers alone) and do
    not fit the averaged weights: update_bn measures them again in one pass over the training data, in
    training batches (it does nothing without batch norm).
    """
    test_loss, test_acc = evaluate(model, x_test, y_test)
    metrics = {"test_loss": test_loss, "test_acc": test_acc}
    if averaged is not None:
        batches = (x_train[start : start + batch_size] for start in range(0, len(x_train), batch_size))
        update_bn(batches, averaged)
        averaged_loss, averaged_acc = evaluate(averaged, x_test, y_test)
        metrics |= {"averaged_test_loss": averaged_loss, "averaged_test_acc": averaged_acc}
    return metrics


def contiguous(model: nn.Module) -> nn.Module:
    # Handed back in the ordinary layout: callers save, average or run it like any other model.
    return model.to(memory_format=torch.contiguous_format)


# ---------------------------------------------------------------- the loop


class Bookkeeper:
    """What the loop does around its steps: curve, divergence, progress and epoch-end states, per member.

    Step losses stay on the device and are read once per report: no host sync on every step. Each read checks
    them for divergence and sends member i's curve points and progress to reporters[i]. After each epoch every
    member is evaluated and its reporter gets a TrainingState of its own. `members` names the members in
    errors (None for a single run); `resumes` holds each member's state to resume from, all at the same step.
    """

    def __init__(
        self,
        reporters: list[Reporter],
        resumes: list[TrainingState] | None,
        *,
        epochs: int,
        steps_per_epoch: int,
        report_every: int,
        attempt: int,
        device: torch.device,
        members: list[int] | None = None,
    ) -> None:
        self.reporters = reporters
        self.members = members
        self.epochs = epochs
        self.total_steps = epochs * steps_per_epoch
        self.attempt = attempt
        self.window = torch.zeros(report_every, len(reporters), device=device)  # step x member
        self.filled = 0
        extras = [resume.extra for resume in resumes] if resumes else [{} for _ in reporters]
        self.start_epoch, self.step = (resumes[0].epoch, resumes[0].step) if resumes else (0, 0)
        self.initial_loss: list[float | None] = [extra.get("initial_loss") for extra in extras]
        self.best_val_acc: list[float] = [extra.get("best_val_acc", 0.0) for extra in extras]
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
    ) -> list[dict[str, float]]:
        """Evaluates member i's `models[i]` and hands reporters[i] its metrics and TrainingState."""
        evaluations = [evaluate(model, *val) for model in models]
        progress = self.progress(epoch + 1.0)
        rng = torch.get_rng_state()
        all_metrics, reasons = [], []
        for m, (model, (val_loss, val_acc)) in enumerate(zip(models, evaluations, strict=True)):
            self.best_val_acc[m] = max(self.best_val_acc[m], val_acc)
            metrics = {
                "train_loss": self.last_train_loss[m],
                "val_loss": val_loss,
                "val_acc": val_acc,
                "best_val_acc": self.best_val_acc[m],
                "lr": lr,
            }
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
                }
                | (extra or {}),
            )
            reasons.append(self.reporters[m].epoch_end(state, metrics, progress))
            all_metrics.append(metrics)
        self._stop_if_asked(reasons)
        return all_metrics

    @staticmethod
    def _stop_if_asked(reasons: list[StopReason | None]) -> None:
        if reason := next((reason for reason in reasons if reason), None):
            raise Stopped(reason)


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
        """A split's inputs on the device, in the layout the steps want."""

    def train_mode(self) -> None:
        """Put the networks the steps run in training mode (evaluation left them in eval mode)."""

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Each member's mean loss on its batch x[idx[k]], y[idx[k]], their gradients accumulated."""

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
        self.engine = Engine(
            self.model,
            device,
            compile=spec.training.compile,
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

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        (batch,) = idx
        return self.engine.forward_backward(x[batch], y[batch]).reshape(1)

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
    # The whole dataset lives on the device in the steps' layout; a batch is one indexed slice of it.
    x_train, y_train = trainee.to_device(splits.train[0]), splits.train[1].to(device)
    x_val, y_val = trainee.to_device(splits.val[0]), splits.val[1].to(device)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    schedule = build_schedule(spec.lr_schedule, optimizer, steps_per_epoch)
    log = Bookkeeper(
        reporters,
        resumes,
        epochs=cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        report_every=report_every,
        attempt=attempt,
        device=device,
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

    metrics: list[dict[str, float]] = [{} for _ in reporters]
    for epoch in range(log.start_epoch, cfg.epochs):
        trainee.train_mode()
        orders = torch.stack([epoch_order(len(x_train), seed, epoch, device) for seed in trainee.seeds])
        for batch in range(steps_per_epoch):
            apply_momentum_ramp(optimizer, spec.optimizer, epoch + batch / steps_per_epoch)
            idx = orders[:, batch * cfg.batch_size : (batch + 1) * cfg.batch_size]  # member x sample
            optimizer.zero_grad(set_to_none=True)
            losses = trainee.forward_backward(x_train, y_train, idx)
            optimizer.step()
            schedule.step()
            if average is not None and epoch >= averaging_from:
                average.update(trainee.parameters)
            if log.record(losses) or batch == steps_per_epoch - 1:
                log.flush(epoch + (batch + 1) / steps_per_epoch, optimizer.param_groups[0]["lr"])

        optimizer_state, extra = optimizer.state_dict(), None
        if average is not None:
            optimizer_state, extra = average.with_averages(optimizer_state)
        metrics = log.end_epoch(
            epoch,
            trainee.current_models(),
            trainee.member_optimizer_states(optimizer_state),
            schedule.state_dict(),
            (x_val, y_val),
            optimizer.param_groups[0]["lr"],
            extra,
        )

    x_test, y_test = trainee.to_device(splits.test[0]), splits.test[1].to(device)
    models = trainee.current_models()
    averaged = trainee.averaged_models(average.tensors) if average is not None else [None] * len(models)
    results = []
    for model, averaged_model, member_metrics in zip(models, averaged, metrics, strict=True):
        member_metrics = member_metrics | final_metrics(
            model, averaged_model, x_train, cfg.batch_size, x_test, y_test
        )
        results.append(
            TrainResult(
                model=contiguous(model),
                metrics=member_metrics,
                steps=log.step,
                seconds=log.elapsed_s(),
                engine=trainee.features,
                averaged_model=contiguous(averaged_model) if averaged_model is not None else None,
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
    reporter = reporter or _NullReporter()
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
