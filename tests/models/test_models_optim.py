"""Each optimizer against a NumPy transcription of its CS231n update rule; momentum ramps."""

import numpy as np
import pytest
import torch

from models.optim import apply_momentum_ramp, build_optimizer, momentum_at

STEPS = 50
SHAPE = (6, 5)


def textbook(kind, hp, x, grads, wd=0.0, mus=None):
    """The update rules as written in the course notes, one step per gradient; returns the final x."""
    x = x.copy()
    v = np.zeros_like(x)
    cache = np.zeros_like(x)
    m = np.zeros_like(x)
    lr, eps = hp["lr"], hp.get("eps")
    for t, g in enumerate(grads, start=1):
        dx = g + wd * x  # L2 weight decay added to the gradient
        mu = mus[t - 1] if mus is not None else hp.get("momentum")
        if kind == "sgd":
            x += -lr * dx
        elif kind == "momentum":
            v = mu * v - lr * dx
            x += v
        elif kind == "nesterov":
            v_prev = v
            v = mu * v - lr * dx
            x += -mu * v_prev + (1 + mu) * v
        elif kind == "adagrad":
            cache += dx**2
            x += -lr * dx / (np.sqrt(cache) + eps)
        elif kind == "rmsprop":
            decay = hp["decay_rate"]
            cache = decay * cache + (1 - decay) * dx**2
            x += -lr * dx / (np.sqrt(cache) + eps)
        elif kind == "adam":
            b1, b2 = hp["beta1"], hp["beta2"]
            m = b1 * m + (1 - b1) * dx
            v = b2 * v + (1 - b2) * (dx**2)
            mt = m / (1 - b1**t)
            vt = v / (1 - b2**t)
            x += -lr * mt / (np.sqrt(vt) + eps)
    return x


def run_torch(spec, x0, grads, wd=0.0, on_step=None):
    """Apply the same gradients through build_optimizer, in float64."""
    p = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    opt = build_optimizer(spec, [p], weight_decay=wd)
    for i, g in enumerate(grads):
        if on_step:
            on_step(opt, i)
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


SPECS = [
    {"type": "sgd", "lr": 0.05},
    {"type": "momentum", "lr": 0.01, "momentum": 0.8},
    {"type": "nesterov", "lr": 0.01, "momentum": 0.9},
    {"type": "adagrad", "lr": 0.1, "eps": 1e-7},
    {"type": "rmsprop", "lr": 0.01, "decay_rate": 0.9, "eps": 1e-7},
    {"type": "adam", "lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-8},
]


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    return rng.standard_normal(SHAPE), [rng.standard_normal(SHAPE) for _ in range(STEPS)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["type"])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_optimizer_matches_textbook_rule(spec, wd, problem):
    x0, grads = problem
    expected = textbook(spec["type"], spec, x0, grads, wd)
    got = run_torch(spec, x0, grads, wd)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)
    assert not np.allclose(got, x0)  # the updates did something


@pytest.mark.parametrize("kind", ["momentum", "nesterov"])
def test_momentum_ramp_matches_textbook_with_varying_mu(kind, problem):
    x0, grads = problem
    spec = {"type": kind, "lr": 0.01, "momentum": 0.95, "momentum_ramp": {"start": 0.5, "epochs": 3}}
    steps_per_epoch = 10
    mus = [momentum_at(spec, i / steps_per_epoch) for i in range(STEPS)]
    got = run_torch(
        spec, x0, grads, on_step=lambda opt, i: apply_momentum_ramp(opt, spec, i / steps_per_epoch)
    )
    np.testing.assert_allclose(got, textbook(kind, spec, x0, grads, mus=mus), rtol=1e-6, atol=1e-12)


def test_momentum_at_ramps_linearly_then_holds():
    spec = {"type": "nesterov", "momentum": 0.9, "momentum_ramp": {"start": 0.5, "epochs": 4}}
    assert momentum_at(spec, 0) == pytest.approx(0.5)
    assert momentum_at(spec, 2) == pytest.approx(0.7)
    assert momentum_at(spec, 4) == pytest.approx(0.9)
    assert momentum_at(spec, 40) == pytest.approx(0.9)
    assert momentum_at({"type": "momentum", "momentum": 0.8}, 1.5) == pytest.approx(0.8)
    assert momentum_at({"type": "adam"}, 1.0) is None


def test_optimizer_starts_at_ramp_start_and_accepts_pydantic_specs():
    from models.spec import Nesterov

    spec = Nesterov(type="nesterov", momentum=0.9, momentum_ramp={"start": 0.5, "epochs": 2})
    opt = build_optimizer(spec, [torch.nn.Parameter(torch.zeros(2))])
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.5)
    assert opt.param_groups[0]["nesterov"] is True


def test_nesterov_with_zero_momentum_is_plain_sgd(problem):
    x0, grads = problem
    got = run_torch({"type": "nesterov", "lr": 0.05, "momentum": 0.0}, x0, grads)
    np.testing.assert_allclose(got, textbook("sgd", {"lr": 0.05}, x0, grads), rtol=1e-6)


def test_dict_spec_defaults_come_from_the_schema():
    opt = build_optimizer({"type": "rmsprop"}, [torch.nn.Parameter(torch.zeros(2))])
    group = opt.param_groups[0]
    assert (group["lr"], group["alpha"], group["eps"]) == (0.001, 0.99, 1e-7)
