"""Learning-rate schedules against their closed forms, per step and per epoch, with warmup."""

import json
import math

import pytest
import torch

from models.optim import build_optimizer, build_schedule

LR0 = 0.1
STEPS_PER_EPOCH = 7
EPOCHS = 9
STEPS = EPOCHS * STEPS_PER_EPOCH


def closed_form(spec, step):
    """lr for the optimizer step numbered `step` (0-based), written out independently."""
    unit = spec.get("unit", "epoch")
    t = step if unit == "step" else math.floor(step / STEPS_PER_EPOCH)
    eta_min = spec.get("eta_min", 0.0)
    decay = {
        "constant": lambda: 1.0,
        "step": lambda: spec.get("gamma", 0.1) ** math.floor(t / spec["step_size"]),
        "exponential": lambda: math.exp(-spec["k"] * t),
        "inverse_time": lambda: 1.0 / (1.0 + spec["k"] * t),
        # lr = eta_min + (lr0 - eta_min)(1 + cos(pi t / T)) / 2, T the whole run unless t_max is given
        "cosine": lambda: cosine(eta_min, t, spec.get("t_max") or (STEPS if unit == "step" else EPOCHS)),
        "cosine_restarts": lambda: cosine(eta_min, *sgdr_position(t, spec["t_0"], spec.get("t_mult", 1))),
    }[spec["type"]]()
    warmup = spec.get("warmup_steps", 0)
    return LR0 * decay * (min(1.0, (step + 1) / warmup) if warmup else 1.0)


def cosine(eta_min, t, period):
    """The cosine's lr over LR0 at t of period."""
    return (eta_min + (LR0 - eta_min) * (1 + math.cos(math.pi * t / period)) / 2) / LR0


def sgdr_position(t, t_0, t_mult):
    """(T_cur, T_i) of SGDR: cycles of t_0, t_0 * t_mult, t_0 * t_mult**2, ... units."""
    t_cur, t_i = t, t_0
    while t_cur >= t_i:
        t_cur, t_i = t_cur - t_i, t_i * t_mult
    return t_cur, t_i


def lrs_seen(spec, steps=STEPS):
    """The lr each optimizer step uses, with the scheduler stepped once per optimizer step."""
    p = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer({"type": "sgd", "lr": LR0}, [p])
    sched = build_schedule(spec, opt, STEPS_PER_EPOCH, epochs=EPOCHS)
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
# Per step: the whole run, a period a third of it (the cosine rises again past t_max), SGDR cycles of 5
# steps or of 5, 10, 20 steps. Per epoch: the whole run, 4 epochs, cycles of 2 epochs or of 2, 4, 8 epochs.
COSINE_SPECS = [
    {**base, "unit": unit, **extra}
    for unit, t_max, t_0 in (("step", 21, 5), ("epoch", 4, 2))
    for base in (
        {"type": "cosine"},
        {"type": "cosine", "t_max": t_max, "eta_min": 0.01},
        {"type": "cosine_restarts", "t_0": t_0},
        {"type": "cosine_restarts", "t_0": t_0, "t_mult": 2, "eta_min": 0.005},
    )
    for extra in ({}, {"warmup_steps": 10})
]


def spec_id(spec):
    return "-".join(str(v) for v in spec.values())


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_schedule_follows_closed_form(spec):
    seen, _, _ = lrs_seen(spec)
    assert seen == pytest.approx([closed_form(spec, i) for i in range(STEPS)], rel=1e-12)


@pytest.mark.parametrize("spec", COSINE_SPECS, ids=spec_id)
def test_cosine_schedules_follow_closed_form(spec):
    # torch's CosineAnnealingLR steps in a recursive form, so its lr drifts from the closed form by rounding.
    seen, _, _ = lrs_seen(spec)
    assert seen == pytest.approx([closed_form(spec, i) for i in range(STEPS)], rel=1e-9, abs=1e-15)


def test_cosine_reaches_eta_min_at_t_max_and_restarts_at_the_lr():
    seen, _, _ = lrs_seen({"type": "cosine", "t_max": 20, "eta_min": 0.01, "unit": "step"})
    assert seen[0] == LR0
    assert seen[20] == pytest.approx(0.01)
    assert seen[40] == pytest.approx(LR0)  # past t_max the cosine rises again, as torch's does
    seen, _, _ = lrs_seen({"type": "cosine_restarts", "t_0": 2, "t_mult": 2, "unit": "epoch"})
    cycle_starts = [seen[epoch * STEPS_PER_EPOCH] for epoch in (0, 2, 6)]
    assert cycle_starts == [LR0] * 3
    assert min(seen) > 0 and seen[5 * STEPS_PER_EPOCH] < seen[4 * STEPS_PER_EPOCH]


def test_cosine_without_t_max_needs_the_run_length():
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="epochs"):
        build_schedule({"type": "cosine"}, build_optimizer({"type": "sgd"}, [p]), STEPS_PER_EPOCH)


def test_epoch_unit_decays_only_at_epoch_boundaries():
    seen, _, _ = lrs_seen({"type": "exponential", "k": 0.5, "unit": "epoch"})
    assert len(set(seen[:STEPS_PER_EPOCH])) == 1
    assert seen[STEPS_PER_EPOCH] < seen[STEPS_PER_EPOCH - 1]


def test_warmup_rises_linearly_to_the_base_lr():
    seen, _, _ = lrs_seen({"type": "constant", "warmup_steps": 4}, steps=6)
    assert seen == pytest.approx([LR0 / 4, LR0 / 2, 3 * LR0 / 4, LR0, LR0, LR0])


RESUMED_SPECS = [
    {"type": "step", "step_size": 2, "gamma": 0.5, "unit": "step", "warmup_steps": 3},
    {"type": "cosine", "eta_min": 0.01, "unit": "step", "warmup_steps": 3},
    {"type": "cosine", "unit": "epoch", "warmup_steps": 10},
    {"type": "cosine_restarts", "t_0": 3, "t_mult": 2, "unit": "step", "warmup_steps": 3},
    {"type": "cosine_restarts", "t_0": 1, "unit": "epoch"},
]


@pytest.mark.parametrize("spec", RESUMED_SPECS, ids=spec_id)
def test_state_dict_is_json_and_resumes(spec):
    # Saved after 8 steps: mid-epoch, mid-warmup, mid-cycle.
    full, _, _ = lrs_seen(spec, steps=20)
    _, opt, sched = lrs_seen(spec, steps=8)
    saved = json.loads(json.dumps(sched.state_dict()))
    opt_saved = opt.state_dict()

    p = torch.nn.Parameter(torch.zeros(3))
    opt2 = build_optimizer({"type": "sgd", "lr": LR0}, [p])
    sched2 = build_schedule(spec, opt2, STEPS_PER_EPOCH, epochs=EPOCHS)
    # Build both first, then load: building a scheduler sets the lr for step 0.
    opt2.load_state_dict(opt_saved)
    sched2.load_state_dict(saved)
    resumed = []
    for _ in range(12):
        resumed.append(opt2.param_groups[0]["lr"])
        p.grad = torch.ones(3)
        opt2.step()
        sched2.step()
    assert resumed == pytest.approx(full[8:], rel=1e-12)
