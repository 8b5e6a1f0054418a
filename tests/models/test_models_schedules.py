"""Learning-rate schedules against their closed forms, per step and per epoch, with warmup."""

import json
import math

import pytest
import torch

from models.optim import build_optimizer, build_schedule

LR0 = 0.1
STEPS_PER_EPOCH = 7
STEPS = 60


def closed_form(spec, step):
    """lr for the optimizer step numbered `step` (0-based), written out independently."""
    t = step if spec.get("unit", "epoch") == "step" else math.floor(step / STEPS_PER_EPOCH)
    decay = {
        "constant": lambda: 1.0,
        "step": lambda: spec.get("gamma", 0.1) ** math.floor(t / spec["step_size"]),
        "exponential": lambda: math.exp(-spec["k"] * t),
        "inverse_time": lambda: 1.0 / (1.0 + spec["k"] * t),
    }[spec["type"]]()
    warmup = spec.get("warmup_steps", 0)
    return LR0 * decay * (min(1.0, (step + 1) / warmup) if warmup else 1.0)


def lrs_seen(spec, steps=STEPS):
    """The lr each optimizer step uses, with the scheduler stepped once per optimizer step."""
    p = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer({"type": "sgd", "lr": LR0}, [p])
    sched = build_schedule(spec, opt, STEPS_PER_EPOCH)
    seen = []
    for _ in range(steps):
        seen.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(3)
        opt.step()
        sched.step()
    return seen, opt, sched


SPECS = [
    {"type": "constant"},
    {"type": "constant", "warmup_steps": 10},
    *[
        {**base, "unit": unit, **extra}
        for base in (
            {"type": "step", "step_size": 3, "gamma": 0.5},
            {"type": "exponential", "k": 0.2},
            {"type": "inverse_time", "k": 0.3},
        )
        for unit in ("step", "epoch")
        for extra in ({}, {"warmup_steps": 5})
    ],
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_schedule_follows_closed_form(spec):
    seen, _, _ = lrs_seen(spec)
    assert seen == pytest.approx([closed_form(spec, i) for i in range(STEPS)], rel=1e-12)


def test_epoch_unit_decays_only_at_epoch_boundaries():
    seen, _, _ = lrs_seen({"type": "exponential", "k": 0.5, "unit": "epoch"})
    assert len(set(seen[:STEPS_PER_EPOCH])) == 1
    assert seen[STEPS_PER_EPOCH] < seen[STEPS_PER_EPOCH - 1]


def test_warmup_rises_linearly_to_the_base_lr():
    seen, _, _ = lrs_seen({"type": "constant", "warmup_steps": 4}, steps=6)
    assert seen == pytest.approx([LR0 / 4, LR0 / 2, 3 * LR0 / 4, LR0, LR0, LR0])


def test_state_dict_is_json_and_resumes():
    spec = {"type": "step", "step_size": 2, "gamma": 0.5, "unit": "step", "warmup_steps": 3}
    full, _, _ = lrs_seen(spec, steps=20)
    _, opt, sched = lrs_seen(spec, steps=8)
    saved = json.loads(json.dumps(sched.state_dict()))
    opt_saved = opt.state_dict()

    p = torch.nn.Parameter(torch.zeros(3))
    opt2 = build_optimizer({"type": "sgd", "lr": LR0}, [p])
    sched2 = build_schedule(spec, opt2, STEPS_PER_EPOCH)
    # Build both first, then load: building a scheduler sets the lr for step 0.
    opt2.load_state_dict(opt_saved)
    sched2.load_state_dict(saved)
    resumed = []
    for _ in range(12):
        resumed.append(opt2.param_groups[0]["lr"])
        p.grad = torch.ones(3)
        opt2.step()
        sched2.step()
    assert resumed == pytest.approx(full[8:])
