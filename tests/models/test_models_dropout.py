"""Inverted and vanilla dropout: where the 1/p_keep scaling happens, and how much is dropped."""

import pytest
import torch

from models.dropout import Dropout

P = 0.3


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.rand(1000, 1000) + 0.5  # strictly positive, so a zero means "dropped"


def test_eval_inverted_is_identity(x):
    assert torch.equal(Dropout(P, "inverted").eval()(x), x)


def test_eval_vanilla_scales_by_keep_probability(x):
    assert torch.allclose(Dropout(P, "vanilla").eval()(x), x * (1 - P))


@pytest.mark.parametrize("mode, kept_scale", [("inverted", 1 / (1 - P)), ("vanilla", 1.0)])
def test_training_drops_about_p_and_scales_kept_units(x, mode, kept_scale):
    out = Dropout(P, mode).train()(x)
    dropped = out == 0
    assert dropped.float().mean().item() == pytest.approx(P, abs=0.005)
    assert torch.allclose(out[~dropped], x[~dropped] * kept_scale)


@pytest.mark.parametrize("mode", ["inverted", "vanilla"])
def test_expected_train_activation_matches_eval_output(x, mode):
    layer = Dropout(P, mode)
    train_mean = layer.train()(x).mean()
    eval_mean = layer.eval()(x).mean()
    assert train_mean.item() == pytest.approx(eval_mean.item(), rel=0.01)


def test_repr_and_validation():
    assert "p=0.3, mode=vanilla" in repr(Dropout(P, "vanilla"))
    with pytest.raises(ValueError):
        Dropout(1.0)
    with pytest.raises(ValueError):
        Dropout(0.5, "sideways")
