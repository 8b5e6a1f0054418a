"""The training loop. It knows nothing of SQL or Redis: it reports through a `Reporter`."""

from __future__ import annotations

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

from models.cnn import build_model
from models.datasets import Splits
from models.optim import apply_momentum_ramp, build_optimizer, build_schedule
from models.spec import JobSpec
from store.artifacts import TrainingState
from store.streams import Point

log = logging.getLogger(__name__)

# A loss this many times its value at initialisation has left any useful region: a classifier's
# loss starts near ln(classes) and only an exploding run multiplies it a thousandfold.
DIVERGENCE_FACTOR = 1000.0
# Below this many channels a BatchNorm2d keeps the network in NCHW on the CPU (see wants_channels_last).
MIN_CPU_NHWC_BATCHNORM_CHANNELS = 16


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


@dataclass(frozen=True)
class EngineFeatures:
    """What sped this run up, for logs and benchmarks."""

    channels_last: bool
    bf16_autocast: bool
    compiled: bool


@dataclass
class TrainResult:
    model: nn.Module
    metrics: dict[str, float]
    steps: int
    seconds: float
    engine: EngineFeatures


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


@contextmanager
def reporting_meanwhile(report: Callable[[], str | None] | None, every_s: float = 1.0) -> Iterator[list[str]]:
    """Call `report` every `every_s` seconds from a side thread while the body blocks the loop.

    Yields the list that collects a reason to stop, if `report` answers one. The loop is not reporting
    while the body runs, so the two never use the reporter at the same time.
    """
    reasons: list[str] = []
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
        keep_alive: Callable[[], str | None] | None = None,
    ) -> None:
        self.model = model
        self.keep_alive = keep_alive
        self.device = device
        self.channels_last = wants_channels_last(model, device) if channels_last is None else channels_last
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        # bf16 keeps float32's range, so it needs no loss scaling. Only where the hardware has it: emulated
        # on older GPUs, and on this CPU (no AVX512-BF16/AMX) lenet5 steps ran 0.8x as fast under it.
        self.autocast = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
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
    device = device or pick_device()
    cfg = spec.training
    torch.manual_seed(cfg.seed)
    model = build_model(spec.model, splits.input_shape, splits.num_classes, spec.regularization).to(device)
    engine = Engine(
        model,
        device,
        compile=cfg.compile,
        channels_last=channels_last,
        # No progress while it compiles: an eta from a step that has not finished would be nonsense.
        keep_alive=lambda: reporter.report([], {}),
    )
    optimizer = build_optimizer(
        spec.optimizer, model.parameters(), weight_decay=spec.regularization.weight_decay
    )
    # The whole dataset lives on the device in the engine's layout; a batch is one indexed slice of it.
    x_train, y_train = engine.to_device(splits.train[0]), splits.train[1].to(device)
    x_val, y_val = engine.to_device(splits.val[0]), splits.val[1].to(device)
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
            optimizer.zero_grad(set_to_none=True)
            loss = engine.forward_backward(x_train[idx], y_train[idx])
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

    x_test, y_test = engine.to_device(splits.test[0]), splits.test[1].to(device)
    test_loss, test_acc = evaluate(model, x_test, y_test)
    metrics |= {"test_loss": test_loss, "test_acc": test_acc}
    return TrainResult(
        # Handed back in the ordinary layout: callers save, average or run it like any other model.
        model=model.to(memory_format=torch.contiguous_format),
        metrics=metrics,
        steps=step,
        seconds=elapsed_before + time.perf_counter() - started,
        engine=engine.features,
    )
