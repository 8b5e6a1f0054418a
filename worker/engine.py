"""How training steps run on a device: memory format, precision and compilation, chosen once per job."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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
    """What sped this run up, for logs and benchmarks."""

    channels_last: bool
    bf16_autocast: bool
    compiled: bool
    vectorized: bool = False  # trained with other members in one vmapped step (worker/vectorized.py)


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
