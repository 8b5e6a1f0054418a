"""Polyak and EMA parameter averaging (spec.ensemble.param_averaging), of one model or stacked members."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn, get_swa_multi_avg_fn

from models.spec import EnsembleSpec, JobSpec

# A parameter's running average rides in the checkpoint as one more slot of that parameter's optimizer state,
# beside its momentum buffer or Adam moments: state of the same kind (one tensor per parameter, advanced by
# every step), and a slot needs no change to the checkpoint format. `model` stays exactly the network's
# state_dict, so a checkpoint still loads into a plain model with load_state_dict; the slot is taken out
# again before the optimizer loads its own state. The count of averaged steps goes into `extra`.
AVERAGED_SLOT = "averaged"


def averaging_start_epoch(spec: JobSpec) -> int | None:
    """The first epoch whose steps are averaged; None without parameter averaging."""
    ensemble = spec.ensemble
    if ensemble.param_averaging == "none":
        return None
    if ensemble.averaging_start_epoch is not None:
        return ensemble.averaging_start_epoch
    # Polyak averages the iterates near a minimum, not the early ones far from it; an EMA forgets those.
    return spec.training.epochs // 2 if ensemble.param_averaging == "polyak" else 0


def averaging_update(ensemble: EnsembleSpec) -> Callable:
    """swa_utils' update for the spec's averaging, given explicitly so every device computes the same one.

    Both are one lerp per tensor, elementwise, so over stacked members' tensors member k's slice gets what
    member k's own average would.
    """
    if ensemble.param_averaging == "ema":
        return get_ema_multi_avg_fn(ensemble.ema_decay)  # ema += (1 - decay) * (w - ema)
    return get_swa_multi_avg_fn()  # mean += (w - mean) / (n + 1): the plain mean of the averaged steps


class ParameterAverage:
    """AveragedModel.update_parameters (use_buffers=False) over a list of tensors, with the same update.

    The tensors are what the optimizer updates: one model's parameters, or K members' stacked ones. Buffers
    are not averaged: an averaged model takes its raw model's, and final_metrics measures batch norm
    statistics anew for the averaged weights.
    """

    def __init__(self, params: list[torch.Tensor], update: Callable) -> None:
        # Before the first update the "average" is a copy of the weights it starts from, as AveragedModel's.
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

    def with_averages(self, optimizer_state: dict) -> tuple[dict, dict]:
        """The optimizer's state dict with the averages as one more slot, and the checkpoint's `extra`."""
        averages = self.tensors if self.count else None  # no average yet, only a copy of the weights
        return with_averages(optimizer_state, averages), {"n_averaged": self.count}


def with_averages(optimizer_state: dict, averages: list[torch.Tensor] | None) -> dict:
    """The optimizer's state dict plus each parameter's average (in parameter order) as one more slot."""
    if averages is None:
        return optimizer_state
    # Copies of the per-parameter dicts: optimizer.state_dict() hands out the live optimizer's own.
    state = {index: dict(slots) for index, slots in optimizer_state["state"].items()}
    for index, average in enumerate(averages):
        state.setdefault(index, {})[AVERAGED_SLOT] = average
    return optimizer_state | {"state": state}


def split_averages(optimizer_state: dict) -> tuple[dict, list[torch.Tensor] | None]:
    """A checkpoint's optimizer state without the averages, and the averages (None when it has none)."""
    state, averages = {}, {}
    for index, slots in optimizer_state["state"].items():
        if AVERAGED_SLOT in slots:
            averages[int(index)] = slots[AVERAGED_SLOT]
        if own := {slot: value for slot, value in slots.items() if slot != AVERAGED_SLOT}:
            state[index] = own
    return optimizer_state | {"state": state}, [averages[i] for i in sorted(averages)] or None
