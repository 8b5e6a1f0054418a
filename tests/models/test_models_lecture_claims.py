"""The lecture's claims, checked on what the service trains: activations, momentum, AdaGrad vs RMSprop."""

import math

import pytest
import torch

from models.datasets import Splits, load_splits
from models.optim import build_optimizer
from tests.factories import job_spec, training
from worker.training import train

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These networks are tiny: a second thread only adds synchronisation, and stalls on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mlp(activation: str, width: int, classes: int) -> list[dict]:
    """flatten → linear → activation → linear → activation → linear, as a layer list."""
    hidden = [{"type": "linear", "out_features": width}, {"type": "activation", "fn": activation}]
    return [{"type": "flatten"}, *hidden, *hidden, {"type": "linear", "out_features": classes}]


# ---------------------------------------------------------------- without a nonlinearity, one linear map


@pytest.mark.parametrize("model", [{"layers": mlp("none", 32, 10)}, {"arch": "lenet5", "activation": "none"}])
def test_a_trained_network_without_activations_is_an_affine_map(model):
    splits = load_splits({"name": "digits"}, model)
    spec = job_spec(model=model, optimizer={"type": "sgd", "lr": 0.05}, training=training(epochs=1))
    trained = train(spec, splits, device=CPU).model
    f = trained.double().eval()  # float64, so the check can be tight
    x, y = splits.test[0][:50].double(), splits.test[0][50:100].double()
    with torch.no_grad():
        for a in (-1.5, 0.3, 0.5, 2.0):
            assert torch.allclose(f(a * x + (1 - a) * y), a * f(x) + (1 - a) * f(y), atol=1e-9)


def test_the_same_check_fails_once_the_network_has_an_activation():
    model = {"layers": mlp("relu", 32, 10)}
    splits = load_splits({"name": "digits"}, model)
    spec = job_spec(model=model, optimizer={"type": "sgd", "lr": 0.05}, training=training(epochs=1))
    f = train(spec, splits, device=CPU).model.double().eval()
    x, y = splits.test[0][:50].double(), splits.test[0][50:100].double()
    with torch.no_grad():
        gap = (f(0.5 * x + 0.5 * y) - (0.5 * f(x) + 0.5 * f(y))).abs().max()
    assert gap > 1e-3  # a million times the tolerance the affine networks meet


# ---------------------------------------------------------------- so it cannot learn XOR


def xor_splits(seed: int) -> Splits:
    """Points in [-1, 1]² (kept 0.1 off the axes), labelled 1 where both coordinates share a sign."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2000, 2, generator=g) * 2 - 1
    x = (x + 0.1 * x.sign()) / 1.1
    y = ((x[:, 0] > 0) == (x[:, 1] > 0)).long()
    x = x.view(-1, 1, 1, 2)  # 1x1x2 "images"
    train_, val, test = ((x[a:b], y[a:b]) for a, b in ((0, 1000), (1000, 1300), (1300, 2000)))
    return Splits(
        train_, val, test, [0.0], [1.0], num_classes=2, input_shape=(1, 1, 2), native_shape=(1, 1, 2)
    )


def best_line_accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
    """The best accuracy any straight line reaches on 2-D points: every direction (to 0.1°), every cut."""
    angles = torch.linspace(0, math.pi, 1800)
    projected = x @ torch.stack([angles.cos(), angles.sin()])  # N×directions
    labels = y[projected.argsort(dim=0)].float()  # labels in order along each direction
    zeros_below = torch.cat([torch.zeros(1, len(angles)), (1 - labels).cumsum(0)])
    ones_above = labels.sum(0) - torch.cat([torch.zeros(1, len(angles)), labels.cumsum(0)])
    accuracy = (zeros_below + ones_above) / len(y)  # class 1 on the far side of each cut
    return max(accuracy.max().item(), 1 - accuracy.min().item())  # or on the near side


def test_without_activations_xor_stays_out_of_reach_while_tanh_and_relu_learn_it():
    splits = xor_splits(seed=0)
    adam, twenty_epochs = {"type": "adam", "lr": 0.03}, training(epochs=20, batch_size=100)
    # train() takes its data from the Splits it is given; the schema still wants a dataset.
    specs = {
        fn: job_spec(model={"layers": mlp(fn, 32, 2)}, optimizer=adam, training=twenty_epochs)
        for fn in ("none", "tanh", "relu")
    }
    accuracy = {fn: train(spec, splits, device=CPU).metrics["test_acc"] for fn, spec in specs.items()}
    # Argmax over two affine logits is a half-plane: no better than the best straight line,
    # which gets about 0.7 of such points right (on 700 samples it may do a little better).
    line = best_line_accuracy(splits.test[0].view(-1, 2), splits.test[1])
    assert line < 0.8
    assert accuracy["none"] <= line
    assert accuracy["tanh"] >= 0.95 and accuracy["relu"] >= 0.95


# ---------------------------------------------------------------- update rules on an ill-conditioned bowl

CURVATURE = torch.tensor([10.0, 0.1], dtype=torch.float64)  # f(x, y) = 0.5 * (10 x² + 0.1 y²)


def bowl_gradient(point: torch.Tensor) -> torch.Tensor:
    return CURVATURE * point


def steps_to_minimum(optimizer: dict, tol: float = 1e-3, limit: int = 5000) -> int:
    point = torch.ones(2, dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(optimizer, [point])
    for n in range(1, limit + 1):
        point.grad = bowl_gradient(point.detach())
        opt.step()
        if point.detach().norm() < tol:
            return n
    return limit + 1


def test_momentum_and_nesterov_cross_the_shallow_valley_faster_than_sgd():
    # lr 0.05 is stable for the steep direction (lr * 10 < 2), but crawls along the shallow one:
    # SGD shrinks y by 1 - 0.05 * 0.1 per step, momentum builds up speed there.
    sgd = steps_to_minimum({"type": "sgd", "lr": 0.05})
    momentum = steps_to_minimum({"type": "momentum", "lr": 0.05, "momentum": 0.9})
    nesterov = steps_to_minimum({"type": "nesterov", "lr": 0.05, "momentum": 0.9})
    assert 1000 < sgd < 2000  # 1379
    assert momentum < sgd / 5  # 108
    assert nesterov < sgd / 5  # 50


def effective_steps(optimizer: dict, cache: str, steps: int = 3000) -> torch.Tensor:
    """lr / (sqrt(cache) + eps) per coordinate after each step, on the bowl with noisy gradients."""
    noise = torch.Generator().manual_seed(0)
    point = torch.ones(2, dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(optimizer, [point])
    history = []
    for _ in range(steps):
        # Minibatch-like noise keeps the gradients from vanishing even at the minimum.
        point.grad = bowl_gradient(point.detach()) + 3 * torch.randn(2, generator=noise, dtype=torch.float64)
        opt.step()
        history.append(optimizer["lr"] / (opt.state[point][cache].sqrt() + optimizer["eps"]))
    return torch.stack(history)


def test_adagrad_steps_shrink_toward_zero_while_rmsprop_steps_do_not():
    adagrad = effective_steps({"type": "adagrad", "lr": 0.05, "eps": 1e-7}, "sum")
    rmsprop = effective_steps({"type": "rmsprop", "lr": 0.05, "decay_rate": 0.99, "eps": 1e-7}, "square_avg")
    early, late = 299, -1  # after 300 and after 3000 steps
    # AdaGrad's cache only grows: its step never rises, and falls like 1/sqrt(t) (10x the steps:
    # 1/sqrt(10) = 0.32; 0.46 along x, where the steep start still weighs in the sum).
    assert (adagrad[1:] <= adagrad[:-1]).all()
    assert (adagrad[late] < 0.6 * adagrad[early]).all()
    # RMSprop's cache forgets: its step settles near lr / rms(gradient) and stays there (0.86..1.26).
    assert (rmsprop[early:].min(dim=0).values > 0.6 * rmsprop[early]).all()
    assert (rmsprop[late] > 0.7 * rmsprop[early]).all()
    assert (rmsprop[late] > 20 * adagrad[late]).all()  # same lr; 65x and 52x apart by step 3000
