"""How training steps run on a device: memory format, precision and compilation, chosen once per job."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from store.states import StopReason
from worker.reporter import Stopped

log = logging.getLogger(__name__)

# Below this many channels a BatchNorm2d keeps the network in NCHW on the CPU (see wants_channels_last).
MIN_CPU_NHWC_BATCHNORM_CHANNELS = 16


@dataclass(frozen=True)
class EngineFeatures:
    """What sped this run up, for the job's metrics ("engine"), logs and benchmarks."""

    channels_last: bool
    bf16_autocast: bool
    compiled: bool
    vectorized: bool = False  # trained with other members in one vmapped step (worker/vectorized.py)
    compile_reason: str = ""  # why `compiled` is what it is: the spec's choice, or what "auto" measured

    def report(self) -> dict:
        return asdict(self)


# training.compile "auto". Measured on the 2-core dev CPU (torch 2.13, lenet5, batch 64): a cold compile took
# 26 s (2 s when this process or inductor's on-disk cache had compiled the same network before), and the
# compiled steps ran 1.15-1.22x as fast as eager channels_last ones. On CUDA nothing was measured here: the
# numbers below are assumptions (compiling for Triton takes longer; small networks gain more, fewer kernel
# launches), to be replaced by a measurement.
COMPILE_SECONDS = {"cpu": 30.0, "cuda": 60.0}
COMPILED_SPEEDUP = {"cpu": 1.15, "cuda": 1.3}
# Compile only where the expected saving is at least twice the compile: both numbers are estimates.
COMPILE_REPAY_FACTOR = 2.0
AUTO_WARMUP_STEPS = 5  # eager steps not timed (first allocations, oneDNN's first kernels)
AUTO_TIMED_STEPS = 20  # eager steps timed to estimate the rest of the job


@dataclass(frozen=True)
class CompileDecision:
    compile: bool
    reason: str


def decide_compile(steps_left: int, step_s: float, device: torch.device) -> CompileDecision:
    """Whether compiling repays itself over the `steps_left` steps, each `step_s` seconds eagerly."""
    cost = COMPILE_SECONDS.get(device.type, COMPILE_SECONDS["cuda"])
    speedup = COMPILED_SPEEDUP.get(device.type, 1.0)
    eager_s = steps_left * step_s
    saving = eager_s * (1 - 1 / speedup)
    compile = saving >= COMPILE_REPAY_FACTOR * cost
    return CompileDecision(
        compile,
        f"auto: {'compiled' if compile else 'eager'}: {steps_left:,} steps left at "
        f"{step_s * 1e3:.1f} ms each ({eager_s:.0f} s eagerly) would save about {saving:.0f} s at the "
        f"expected {speedup}x, "
        f"{'at least' if compile else 'less than'} {COMPILE_REPAY_FACTOR:g} times the ~{cost:.0f} s "
        f"compiling takes on {device.type}",
    )


class StepTimer:
    """Times eager steps for training.compile "auto" and decides once it has timed enough of them."""

    def __init__(self, device: torch.device, steps_left: int) -> None:
        self.device = device
        self.steps_left = steps_left
        self.steps = 0
        self.started = 0.0

    def step_done(self) -> CompileDecision | None:
        self.steps += 1
        self.steps_left -= 1
        if self.steps == AUTO_WARMUP_STEPS:
            self._sync()
            self.started = time.perf_counter()
        elif self.steps == AUTO_WARMUP_STEPS + AUTO_TIMED_STEPS:
            self._sync()  # CUDA runs steps asynchronously: two syncs bound the timed window
            step_s = (time.perf_counter() - self.started) / AUTO_TIMED_STEPS
            return decide_compile(self.steps_left, step_s, self.device)
        return None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def too_short_to_compile(steps: int) -> CompileDecision:
    return CompileDecision(
        False, f"auto: eager: {steps:,} steps are too few to time, let alone repay compiling"
    )


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


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
    `compile` "auto" times the first eager steps and compiles if the `steps_left` repay it (decide_compile).
    `keep_alive` is called every second while torch.compile's first step blocks the loop; it answers a
    reason to stop, or None.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        *,
        compile: bool | Literal["auto"],
        steps_left: int = 0,
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
        self.timer: StepTimer | None = None
        if compile != "auto":
            self.compiled, self.compile_reason = compile, f"compile {str(compile).lower()} in the spec"
        elif steps_left < AUTO_WARMUP_STEPS + AUTO_TIMED_STEPS:
            self.compiled, self.compile_reason = False, too_short_to_compile(steps_left).reason
        else:
            self.compiled, self.compile_reason = False, "auto: undecided (timing the first eager steps)"
            self.timer = StepTimer(device, steps_left)
        self.compiled_shape: torch.Size | None = None
        self.net = model

    @property
    def features(self) -> EngineFeatures:
        return EngineFeatures(
            self.channels_last, self.autocast, self.compiled, compile_reason=self.compile_reason
        )

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy of a batch, its gradients accumulated into the model."""
        if self.timer is not None:
            loss = self._forward_backward(self.model, x, y)
            if decision := self.timer.step_done():
                self.timer = None
                self.compiled, self.compile_reason = decision.compile, decision.reason
                log.info("training.compile %s", decision.reason)
            return loss
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
        self.compile_reason += f"; torch.compile failed, so eager: {type(exc).__name__}: {exc}"
