"""Optimizers and learning-rate schedules from the spec, on torch.optim, computing the textbook updates."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from pydantic import BaseModel, TypeAdapter
from torch.optim.lr_scheduler import CosineAnnealingLR, CosineAnnealingWarmRestarts, LambdaLR, LRScheduler

from models.spec import OptimizerSpec, ScheduleSpec

_OPTIMIZER_SPEC = TypeAdapter(OptimizerSpec)
_SCHEDULE_SPEC = TypeAdapter(ScheduleSpec)

# The rules each optimizer and schedule computes (tests check them against NumPy; the catalog shows them).
UPDATE_RULES = {
    "sgd": "x += -lr*dx",
    "momentum": "v = mu*v - lr*dx; x += v",
    "nesterov": "v_prev = v; v = mu*v - lr*dx; x += -mu*v_prev + (1+mu)*v",
    "adagrad": "cache += dx**2; x += -lr*dx/(sqrt(cache)+eps)",
    "rmsprop": "cache = decay_rate*cache + (1-decay_rate)*dx**2; x += -lr*dx/(sqrt(cache)+eps)",
    "adam": "m = beta1*m + (1-beta1)*dx; v = beta2*v + (1-beta2)*dx**2; "
    "x += -lr*(m/(1-beta1**t))/(sqrt(v/(1-beta2**t))+eps)",
}
SCHEDULE_FORMULAS = {
    "constant": "lr = lr0",
    "step": "lr = lr0 * gamma**floor(t/step_size)",
    "exponential": "lr = lr0 * exp(-k*t)",
    "inverse_time": "lr = lr0 / (1 + k*t)",
    "cosine": "lr = eta_min + (lr0 - eta_min) * (1 + cos(pi*t/t_max)) / 2",
    "cosine_restarts": "lr = eta_min + (lr0 - eta_min) * (1 + cos(pi*t_cur/t_i)) / 2; t_cur counts from 0 "
    "in each cycle, t_i = t_0 * t_mult**cycle",
}


# ---------------------------------------------------------------- optimizers


def build_optimizer(
    optimizer_spec: BaseModel | dict, params: Iterable, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """The torch optimizer whose step is the CS231n update rule; weight decay is L2 added to the gradient."""
    spec = _OPTIMIZER_SPEC.validate_python(optimizer_spec)
    match spec.type:
        case "sgd":
            # x += -lr * dx
            return torch.optim.SGD(params, lr=spec.lr, weight_decay=weight_decay)
        case "momentum" | "nesterov":
            return _momentum_sgd(spec, params, weight_decay)
        case "adagrad":
            # cache += dx**2; x += -lr * dx / (sqrt(cache) + eps)
            return torch.optim.Adagrad(
                params,
                lr=spec.lr,
                lr_decay=0.0,
                initial_accumulator_value=0.0,
                eps=spec.eps,
                weight_decay=weight_decay,
            )
        case "rmsprop":
            # cache = decay*cache + (1-decay)*dx**2; x += -lr * dx / (sqrt(cache) + eps)
            return torch.optim.RMSprop(
                params,
                lr=spec.lr,
                alpha=spec.decay_rate,
                eps=spec.eps,
                momentum=0.0,
                centered=False,
                weight_decay=weight_decay,
            )
        case "adam":
            # m, v with bias correction; x += -lr * m_hat / (sqrt(v_hat) + eps). torch computes
            # sqrt(v)/sqrt(1-beta2^t) + eps, which is the same sqrt(v_hat) + eps.
            return torch.optim.Adam(
                params,
                lr=spec.lr,
                betas=(spec.beta1, spec.beta2),
                eps=spec.eps,
                amsgrad=False,
                weight_decay=weight_decay,
            )
    raise ValueError(f"unknown optimizer {spec.type!r}")


def _momentum_sgd(spec: BaseModel, params: Iterable, weight_decay: float) -> torch.optim.SGD:
    """SGD with (Nesterov) momentum, equal to the textbook velocity form while lr is constant.

    Textbook momentum:  v = mu*v - lr*dx;  x += v.
    torch (dampening 0): b = mu*b + dx;    x -= lr*b.   With v = -lr*b both are the same update.
    Textbook Nesterov:  v_prev = v; v = mu*v - lr*dx; x += -mu*v_prev + (1+mu)*v.
    torch nesterov:     b = mu*b + dx;     x -= lr*(dx + mu*b).  Substituting dx = b - mu*b_prev
    gives x += lr*mu*b_prev - lr*(1+mu)*b, the textbook step again with v = -lr*b.
    The two differ only when lr changes between steps: the velocity form keeps past velocity
    scaled by the old lr, torch's buffer scales the whole history by the new one.
    A momentum ramp starting at 0 also differs slightly: torch keeps no buffer while mu == 0,
    so the first step with mu > 0 starts from b = dx instead of the textbook v.
    """
    # torch refuses nesterov with zero momentum at construction, so build with the largest mu the
    # ramp will reach and set the current one right away; nesterov with mu == 0 is plain SGD anyway.
    peak = max(spec.momentum, spec.momentum_ramp.start if spec.momentum_ramp else 0.0)
    optimizer = torch.optim.SGD(
        params,
        lr=spec.lr,
        momentum=peak,
        dampening=0.0,
        nesterov=spec.type == "nesterov" and peak > 0,
        weight_decay=weight_decay,
    )
    apply_momentum_ramp(optimizer, spec, 0.0)
    return optimizer


def momentum_at(optimizer_spec: BaseModel | dict, epoch: float) -> float | None:
    """mu at this (fractional) epoch: ramped linearly from ramp.start to momentum; None without momentum."""
    spec = _OPTIMIZER_SPEC.validate_python(optimizer_spec)
    if spec.type not in ("momentum", "nesterov"):
        return None
    ramp = spec.momentum_ramp
    if ramp is None:
        return spec.momentum
    progress = min(1.0, max(0.0, epoch / ramp.epochs))
    return ramp.start + (spec.momentum - ramp.start) * progress


def apply_momentum_ramp(
    optimizer: torch.optim.Optimizer, optimizer_spec: BaseModel | dict, epoch: float
) -> float | None:
    """Set every param group's momentum to momentum_at(epoch); call once per step or epoch."""
    mu = momentum_at(optimizer_spec, epoch)
    if mu is not None:
        for group in optimizer.param_groups:
            group["momentum"] = mu
    return mu


# ---------------------------------------------------------------- learning-rate schedules


def build_schedule(
    schedule_spec: BaseModel | dict,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    epochs: int | None = None,
) -> LRScheduler | PerUnitSchedule:
    """The schedule to step once per optimizer step; `epochs` is the run's length (cosine's default t_max).

    The closed-form schedules are a LambdaLR, lr = base_lr * lr_factor(spec, step, steps_per_epoch); the
    cosine ones are torch's own schedulers, stepped once per unit (PerUnitSchedule).
    To resume, build the optimizer and this schedule first, then load both state dicts:
    constructing the schedule writes the step-0 lr into the optimizer.
    """
    spec = _SCHEDULE_SPEC.validate_python(schedule_spec)
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
    steps_per_unit = steps_per_epoch if getattr(spec, "unit", "step") == "epoch" else 1
    match spec.type:
        case "cosine":
            if spec.t_max is None and epochs is None:
                raise ValueError("a cosine schedule without t_max needs the run's epochs")
            t_max = spec.t_max or epochs * steps_per_epoch // steps_per_unit
            decay = CosineAnnealingLR(optimizer, T_max=t_max, eta_min=spec.eta_min)
            return PerUnitSchedule(optimizer, decay, steps_per_unit, spec.warmup_steps)
        case "cosine_restarts":
            decay = CosineAnnealingWarmRestarts(
                optimizer, T_0=spec.t_0, T_mult=spec.t_mult, eta_min=spec.eta_min
            )
            return PerUnitSchedule(optimizer, decay, steps_per_unit, spec.warmup_steps)

    # A plain closure, not a callable object: LambdaLR then stores None for it, which keeps
    # state_dict() JSON-serialisable; the closure is rebuilt from the spec when resuming.
    def factor(step: int) -> float:
        return _factor(spec, step, steps_per_epoch)

    return LambdaLR(optimizer, factor)


class PerUnitSchedule:
    """A torch scheduler stepped once per unit (every step, or every epoch's last step), times the warmup.

    Stepped once per optimizer step, like the LambdaLR schedules. Written here because torch composes
    schedulers only by chaining their recursive forms (ChainedScheduler), which multiplies factors
    exactly for none but the simplest: warmup times a cosine with eta_min > 0 drifts from its closed
    form. So the inner scheduler steps on its own lr, and the warmup multiplies what it set.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, decay: LRScheduler, steps_per_unit: int, warmup_steps: int
    ):
        self.optimizer, self.decay = optimizer, decay
        self.steps_per_unit, self.warmup_steps = steps_per_unit, warmup_steps
        self.step_count = 0  # optimizer steps taken
        self._set_lr(_warmup(0, warmup_steps))

    def step(self) -> None:
        self.step_count += 1
        if self.step_count % self.steps_per_unit == 0:
            self._set_lr(1.0)  # the inner scheduler's cosine form reads its own lr, without warmup
            self.decay.step()
        self._set_lr(_warmup(self.step_count, self.warmup_steps))

    def _set_lr(self, warmup: float) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.decay.get_last_lr(), strict=True):
            group["lr"] = lr * warmup

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "decay": self.decay.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step_count"]
        self.decay.load_state_dict(state["decay"])
        self._set_lr(_warmup(self.step_count, self.warmup_steps))


def lr_factor(schedule_spec: BaseModel | dict, step: int, steps_per_epoch: int) -> float:
    """The multiplier of the base lr for the optimizer step numbered `step` (from 0)."""
    return _factor(_SCHEDULE_SPEC.validate_python(schedule_spec), step, steps_per_epoch)


def _factor(spec: BaseModel, step: int, steps_per_epoch: int) -> float:
    """Decay at t (steps, or whole epochs so the lr changes at epoch boundaries) times the warmup."""
    t = step if getattr(spec, "unit", "step") == "step" else step // steps_per_epoch
    match spec.type:
        case "constant":
            decay = 1.0
        case "step":
            decay = spec.gamma ** (t // spec.step_size)
        case "exponential":
            decay = math.exp(-spec.k * t)
        case "inverse_time":
            decay = 1.0 / (1.0 + spec.k * t)
        case _:
            raise ValueError(f"no closed-form factor for schedule {spec.type!r}")
    return decay * _warmup(step, spec.warmup_steps)


def _warmup(step: int, warmup_steps: int) -> float:
    """Linear warmup: optimizer step number `step` (from 0) takes (step + 1) / warmup_steps of the lr."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
