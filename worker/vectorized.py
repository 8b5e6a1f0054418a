"""Several ensemble members in one process: vectorized with torch.func, or one after another.

`train_members` trains K members in one loop: worker/training.py's, given a `StackedMembers` trainee. Their
parameters and buffers are stacked along a leading member dimension, one vmapped forward and one backward
per step serve all of them, and one optimizer updates the stacked tensors. Member k computes what
`train(spec.member_spec(k), splits)` computes: the same initial weights, batches, lr schedule and update rule
(every optimizer here updates elementwise, so one over stacked tensors is K independent ones), the same curve
points and metrics, and checkpoints interchangeable with train()'s in both directions. The same up to
floating point: batched kernels sum in another order, so the weights agree to float tolerance, not bit for
bit (tests/worker/test_vectorized.py measures how closely).

What vmap supports, and how:
- dropout: masks drawn with randomness="different" from the one global generator for all members. Each
  member's masks have the right distribution, but they are not the ones its own train() would have drawn.
- batch norm: the running statistics are stacked buffers like the parameters; vmap updates them in place.
- keep "best": each member keeps its own best epoch's weights. Early stopping is not vectorized: members
  stop at epochs of their own, so "auto" fans them out and the spec refuses "vmap" with it.
- parameter averaging: swa_utils' elementwise update over the stacked tensors, the numbers one AveragedModel
  per member would hold; batch norm statistics are measured anew per member at the end, as in train().
- not used under vmap: torch.compile (steps run eagerly; compiling changes no numbers) and channels_last
  (the stacked weights have five dimensions). bf16 autocast on CUDA is used as in train().
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from models.cnn import inspect_model
from models.datasets import Splits
from models.spec import JobSpec
from store.artifacts import TrainingState
from worker.engine import EngineFeatures, pick_device, wants_bf16_autocast
from worker.reporter import Reporter
from worker.training import TrainResult, seeded_model, train, train_trainee

Strategy = Literal["fanout", "vmap", "sequential"]

# "auto" from measurements: one training step (forward, backward, SGD with momentum) of K members, vmapped
# against a loop over the members (each as train() runs it: channels_last, and bf16 autocast on CUDA), best of
# several interleaved rounds. The loop's time is what fanout costs on one worker; fanout over several workers
# runs members in parallel besides, so vmap has to win clearly. Milliseconds per step, vmap / loop:
#
#   lenet5, 2-core CPU (shared)      B=1          B=8          B=64          B=256
#     K=2                        3.2 / 3.4    5.7 / 4.7   20.1 / 13.0    72.4 /  42.1
#     K=4                        5.0 / 7.3    7.9 / 9.0   40.1 / 25.5   134.7 /  79.6
#     K=8                        4.5 / 13.7  13.7 / 17.9  71.3 / 48.5   359.9 / 155.6
#
# On the CPU vmap wins only at tiny batches, and only with several members: the batched kernels run a whole
# member's batch at once but do not use the cores better than one member's larger batch would.
#
#   H100 (torch 2.11, bf16)          B=1          B=8          B=64          B=256
#     lenet5    K=4              4.8 /  8.1   4.3 /  9.3   3.6 /  8.2    4.3 /  8.0
#     lenet5    K=8              4.8 / 16.8   5.7 / 18.1   5.4 / 16.7    4.8 / 17.0
#     alexnet32 K=4              6.5 / 11.7   6.8 / 14.6   8.4 / 14.6   14.2 / 14.0
#     alexnet32 K=8              9.6 / 28.4  10.5 / 25.1   9.6 / 25.9   27.1 / 29.7
#
# On CUDA a small network's step is all kernel launches, which vmap issues once for K members: it wins until
# the step's arithmetic fills the GPU (alexnet32, 0.34 GFLOP per sample, broke even at batch 256, 88 GFLOP
# per member step; at batch 64, 22 GFLOP, it still won 1.7-2.7x).
CPU_VMAP_MAX_BATCH = 8
CPU_VMAP_MIN_MEMBERS = 4
CUDA_VMAP_MAX_FLOPS_PER_STEP = 3e10  # forward FLOPs of one member's batch (inspect_model's, times batch size)


def choose_strategy(spec: JobSpec, device: torch.device, data_dir: Path | None = None) -> Strategy:
    """How the job's members train on this device: the spec's strategy, or for "auto" the faster one.

    `data_dir`: where an uploaded dataset's file tells its input shape, hence the step's FLOPs."""
    if spec.ensemble.strategy != "auto":
        return spec.ensemble.strategy
    if spec.ensemble.members == 1:
        return "sequential"  # nothing to fan out or vectorize: the one member trains in this task
    if spec.training.early_stopping is not None:
        return "fanout"  # members stop at epochs of their own; vmap steps them all together
    if device.type == "cuda":
        step_flops = inspect_model(spec, data_dir).flops_per_sample * spec.training.batch_size
        return "vmap" if step_flops <= CUDA_VMAP_MAX_FLOPS_PER_STEP else "fanout"
    small_batch = spec.training.batch_size <= CPU_VMAP_MAX_BATCH
    return "vmap" if small_batch and spec.ensemble.members >= CPU_VMAP_MIN_MEMBERS else "fanout"


def train_sequential(
    spec: JobSpec,
    splits: Splits,
    reporters: Sequence[Reporter],
    *,
    members: Sequence[int] | None = None,
    device: torch.device | None = None,
    resumes: Sequence[TrainingState | None] | None = None,
    report_every: int = 10,
    attempt: int = 1,
    channels_last: bool | None = None,
) -> list[TrainResult]:
    """Members one after another by train(); member `members[i]` (default i) reports to `reporters[i]`."""
    members = list(range(len(reporters))) if members is None else list(members)
    resumes = list(resumes) if resumes is not None else [None] * len(reporters)
    return [
        train(
            spec.member_spec(member),
            splits,
            reporter,
            device=device,
            resume=resume,
            report_every=report_every,
            attempt=attempt,
            channels_last=channels_last,
        )
        for member, reporter, resume in zip(members, reporters, resumes, strict=True)
    ]


def train_members(
    spec: JobSpec,
    splits: Splits,
    reporters: Sequence[Reporter],
    *,
    members: Sequence[int] | None = None,
    device: torch.device | None = None,
    resumes: Sequence[TrainingState] | None = None,
    report_every: int = 10,
    attempt: int = 1,
) -> list[TrainResult]:
    """Members `members` (default 0..K-1, K = len(reporters)) vectorized in one loop; see the module's doc.

    Member `members[i]` reports to `reporters[i]` and resumes from `resumes[i]`: all or none, at one step.
    A diverging member raises Diverged for all, naming the member; any reporter's reason to stop, Stopped.
    """
    if spec.training.early_stopping is not None:
        # Simplest correct: a member that stops would go on stepping with the others (the spec refuses it).
        raise ValueError("train_members steps every member together: no early stopping under vmap")
    reporters = list(reporters)
    members = list(range(len(reporters))) if members is None else list(members)
    resumes = list(resumes) if resumes is not None else None
    if resumes is not None and (
        len(resumes) != len(reporters) or len({(resume.epoch, resume.step) for resume in resumes}) > 1
    ):
        raise ValueError("train_members resumes every member, from checkpoints of the same epoch and step")
    trainee = StackedMembers(spec, splits, device or pick_device(), members, resumes)
    return train_trainee(
        trainee,
        spec,
        splits,
        reporters,
        resumes=resumes,
        report_every=report_every,
        attempt=attempt,
        members=members,
    )


class StackedMembers:
    """K members' parameters and buffers stacked along a leading member dimension, stepped by one vmap."""

    def __init__(
        self,
        spec: JobSpec,
        splits: Splits,
        device: torch.device,
        members: list[int],
        resumes: list[TrainingState] | None,
    ) -> None:
        self.device = device
        self.seeds = [spec.ensemble.member_seed(spec.training.seed, member) for member in members]
        # Each member starts from the weights its own train() would: seeded the same way.
        self.models = [
            seeded_model(spec, splits, seed, resume).to(device)
            for seed, resume in zip(self.seeds, resumes or [None] * len(self.seeds), strict=True)
        ]
        self.params, self.buffers = stack_module_state(self.models)
        self.parameters = list(self.params.values())
        autocast = wants_bf16_autocast(device)
        self.features = EngineFeatures(
            False, autocast, compiled=False, vectorized=True, compile_reason="vmap: its steps run eagerly"
        )
        self.member_losses = _vmapped_loss(self.models[0], autocast)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device)  # no channels_last: the stacked weights have five dimensions

    def train_mode(self) -> None:
        pass  # the steps run the vmapped architecture, always in training mode; self.models only evaluate

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses = self.member_losses(self.params, self.buffers, x, y)
        # Members share no parameters: the sum's gradient in member k's slice is member k's own gradient.
        losses.sum().backward()
        return losses

    def current_models(self) -> list[nn.Module]:
        for k, model in enumerate(self.models):
            _load_member(model, self.params | self.buffers, k)
        return self.models

    def averaged_models(self, averages: list[torch.Tensor]) -> list[nn.Module]:
        stacked = dict(zip(self.params, averages, strict=True))
        averaged = []
        for k, model in enumerate(self.models):
            # The raw member's buffers, as AveragedModel(use_buffers=False) keeps them, with the averages.
            averaged.append(copy.deepcopy(model))
            _load_member(averaged[-1], stacked, k)
        return averaged

    def optimizer_state(self, member_states: list[dict]) -> dict:
        return _stacked_optimizer_state(member_states, self.parameters)

    def member_optimizer_states(self, state: dict) -> list[dict]:
        return [_member_optimizer_state(state, self.parameters, k) for k in range(len(self.models))]


def _vmapped_loss(template: nn.Module, autocast: bool) -> Callable:
    """(stacked params and buffers, member x sample inputs and labels) -> each member's mean loss."""
    # Only its structure matters: functional_call runs it on each member's tensors.
    architecture = copy.deepcopy(template).to("meta").train()

    def member_loss(params, buffers, x, y):
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = functional_call(architecture, (params, buffers), (x,))
        # In float32 whatever the forward's precision, as train() computes it.
        return F.cross_entropy(logits.float(), y)

    # "different": every member draws its own dropout masks (vmap refuses random ops without a choice).
    return vmap(member_loss, randomness="different")


@torch.no_grad()
def _load_member(model: nn.Module, stacked: dict[str, torch.Tensor], k: int) -> None:
    """Member k's slice of each stacked tensor into the model's tensor of that name."""
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        if name in stacked:
            tensor.copy_(stacked[name][k])


# A stacked optimizer's state holds, per parameter, slots shaped like the stacked parameter (momentum, Adam's
# moments, the averages), sliced per member, and scalars shared by all members (Adam's step count).


def _member_optimizer_state(state: dict, stacked: list[torch.Tensor], k: int) -> dict:
    """Member k's part of the stacked optimizer's state dict: the state dict its own train() would have."""

    def member_slot(index: int, value):
        per_member = isinstance(value, torch.Tensor) and value.shape == stacked[index].shape
        return value[k].clone() if per_member else copy.deepcopy(value)

    return {
        "state": {
            index: {slot: member_slot(index, value) for slot, value in slots.items()}
            for index, slots in state["state"].items()
        },
        "param_groups": copy.deepcopy(state["param_groups"]),
    }


def _stacked_optimizer_state(states: list[dict], stacked: list[torch.Tensor]) -> dict:
    """The members' optimizer state dicts, all from the same step, as one for the stacked optimizer."""

    def stacked_slot(index: int, values: list):
        per_member = isinstance(values[0], torch.Tensor) and values[0].shape == stacked[index].shape[1:]
        return torch.stack(values) if per_member else values[0]

    first = states[0]
    return {
        "state": {
            index: {slot: stacked_slot(index, [s["state"][index][slot] for s in states]) for slot in slots}
            for index, slots in first["state"].items()
        },
        "param_groups": first["param_groups"],
    }
