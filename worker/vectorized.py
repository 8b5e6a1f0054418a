"""Several ensemble members in one process: vectorized with torch.func, or one after another.

`train_members` trains K members in one loop. Their parameters and buffers are stacked along a leading member
dimension, one vmapped forward and one backward per step serve all of them, and one optimizer updates the
stacked tensors. Member k computes what `train(spec.member_spec(k), splits)` computes: the same initial
weights, batches, lr schedule and update rule (every optimizer here updates elementwise, so one over stacked
tensors is K independent ones), the same curve points and metrics, and checkpoints interchangeable with
train()'s in both directions. The same up to floating point: batched kernels sum in another order, so the
weights agree to float tolerance, not bit for bit (tests/worker/test_vectorized.py measures how closely).

What vmap supports, and how:
- dropout: masks drawn with randomness="different" from the one global generator for all members. Each
  member's masks have the right distribution, but they are not the ones its own train() would have drawn.
- batch norm: the running statistics are stacked buffers like the parameters; vmap updates them in place.
- parameter averaging: swa_utils' elementwise update over the stacked tensors, the numbers one AveragedModel
  per member would hold; batch norm statistics are measured anew per member at the end, as in train().
- not used under vmap: torch.compile (steps run eagerly; compiling changes no numbers) and channels_last
  (the stacked weights have five dimensions). bf16 autocast on CUDA is used as in train().
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from models.cnn import build_model, inspect_model
from models.datasets import Splits
from models.optim import apply_momentum_ramp, build_optimizer, build_schedule
from models.spec import JobSpec
from store.artifacts import TrainingState
from worker.training import (
    Bookkeeper,
    EngineFeatures,
    Reporter,
    TrainResult,
    averaging_start_epoch,
    averaging_update,
    epoch_order,
    final_metrics,
    pick_device,
    split_averages,
    train,
    wants_bf16_autocast,
    with_averages,
)

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


def choose_strategy(spec: JobSpec, device: torch.device) -> Strategy:
    """How the job's members train on this device: the spec's strategy, or for "auto" the faster one."""
    if spec.ensemble.strategy != "auto":
        return spec.ensemble.strategy
    if spec.ensemble.members == 1:
        return "sequential"  # nothing to fan out or vectorize: the one member trains in this task
    if device.type == "cuda":
        step_flops = inspect_model(spec).flops_per_sample * spec.training.batch_size
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
    reporters = list(reporters)
    members = list(range(len(reporters))) if members is None else list(members)
    if resumes is not None and (
        len(resumes) != len(reporters) or len({(resume.epoch, resume.step) for resume in resumes}) > 1
    ):
        raise ValueError("train_members resumes every member, from checkpoints of the same epoch and step")
    device = device or pick_device()
    cfg = spec.training
    seeds = [spec.ensemble.member_seed(cfg.seed, member) for member in members]
    models = []
    for seed, resume in zip(seeds, resumes or [None] * len(seeds), strict=True):
        torch.manual_seed(seed)  # as train() seeds: each member starts from the weights its own run would
        model = build_model(spec.model, splits.input_shape, splits.num_classes, spec.regularization)
        if resume is not None:
            model.load_state_dict(resume.model)
        models.append(model.to(device))
    params, buffers = stack_module_state(models)
    stacked = list(params.values())
    optimizer = build_optimizer(spec.optimizer, stacked, weight_decay=spec.regularization.weight_decay)
    x_train, y_train = splits.train[0].to(device), splits.train[1].to(device)
    x_val, y_val = splits.val[0].to(device), splits.val[1].to(device)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    schedule = build_schedule(spec.lr_schedule, optimizer, steps_per_epoch)
    log = Bookkeeper(
        reporters,
        list(resumes) if resumes is not None else None,
        epochs=cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        report_every=report_every,
        attempt=attempt,
        device=device,
        members=members,
    )
    saved_averages = None
    if resumes is not None:
        optimizer_state, saved_averages = split_averages(
            _stacked_optimizer_state([resume.optimizer for resume in resumes], stacked)
        )
        optimizer.load_state_dict(optimizer_state)
        schedule.load_state_dict(resumes[0].scheduler)
        # One generator draws every member's dropout masks, so every member's checkpoint holds the same state.
        torch.set_rng_state(resumes[0].rng)
    averaging_from = averaging_start_epoch(spec)
    average = None
    if averaging_from is not None:
        average = StackedAverage(stacked, averaging_update(spec.ensemble))
        if saved_averages is not None:
            average.restore(saved_averages, resumes[0].extra["n_averaged"])

    autocast = wants_bf16_autocast(device)
    member_losses = _vmapped_loss(models[0], autocast)
    metrics: list[dict[str, float]] = [{} for _ in members]
    for epoch in range(log.start_epoch, cfg.epochs):
        orders = torch.stack([epoch_order(len(x_train), seed, epoch, device) for seed in seeds])
        for batch in range(steps_per_epoch):
            apply_momentum_ramp(optimizer, spec.optimizer, epoch + batch / steps_per_epoch)
            idx = orders[:, batch * cfg.batch_size : (batch + 1) * cfg.batch_size]  # member x sample
            optimizer.zero_grad(set_to_none=True)
            losses = member_losses(params, buffers, x_train[idx], y_train[idx])
            # Members share no parameters: the sum's gradient in member k's slice is member k's own gradient.
            losses.sum().backward()
            optimizer.step()
            schedule.step()
            if average is not None and epoch >= averaging_from:
                average.update(stacked)
            if log.record(losses) or batch == steps_per_epoch - 1:
                log.flush(epoch + (batch + 1) / steps_per_epoch, optimizer.param_groups[0]["lr"])

        for k, model in enumerate(models):
            _load_member(model, params | buffers, k)
        optimizer_state, extra = optimizer.state_dict(), None
        if average is not None:
            extra = {"n_averaged": average.count}
            optimizer_state = with_averages(optimizer_state, average.tensors if average.count else None)
        metrics = log.end_epoch(
            epoch,
            models,
            [_member_optimizer_state(optimizer_state, stacked, k) for k in range(len(models))],
            schedule.state_dict(),
            (x_val, y_val),
            optimizer.param_groups[0]["lr"],
            extra,
        )

    x_test, y_test = splits.test[0].to(device), splits.test[1].to(device)
    results = []
    for k, model in enumerate(models):
        averaged = None
        if average is not None:
            # The raw member's buffers, as AveragedModel(use_buffers=False) keeps them, with the averages.
            averaged = copy.deepcopy(model)
            _load_member(averaged, dict(zip(params, average.tensors, strict=True)), k)
        results.append(
            TrainResult(
                model=model,
                metrics=metrics[k] | final_metrics(model, averaged, x_train, cfg.batch_size, x_test, y_test),
                steps=log.step,
                seconds=log.elapsed_s(),
                engine=EngineFeatures(False, bf16_autocast=autocast, compiled=False, vectorized=True),
                averaged_model=averaged,
            )
        )
    return results


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


class StackedAverage:
    """AveragedModel.update_parameters (use_buffers=False) over stacked tensors, with the same update.

    The update is elementwise, so member k's slice holds exactly what member k's own AveragedModel would.
    """

    def __init__(self, params: list[torch.Tensor], update: Callable) -> None:
        self.tensors = [p.detach().clone() for p in params]
        self.update_fn = update
        self.count = 0  # n_averaged on the host, so the first-update test needs no device sync
        # The count as AveragedModel hands it to the update function: a long tensor on the device.
        self.n_averaged = torch.zeros((), dtype=torch.long, device=params[0].device)

    @torch.no_grad()
    def update(self, params: list[torch.Tensor]) -> None:
        if self.count == 0:
            for average, param in zip(self.tensors, params, strict=True):
                average.copy_(param)
        else:
            self.update_fn(self.tensors, [p.detach() for p in params], self.n_averaged)
        self.count += 1
        self.n_averaged += 1

    @torch.no_grad()
    def restore(self, averages: list[torch.Tensor], n_averaged: int) -> None:
        for average, saved in zip(self.tensors, averages, strict=True):
            average.copy_(saved)
        self.count = n_averaged
        self.n_averaged.fill_(n_averaged)


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
