"""Checkpoints and weights round-trip through safetensors with everything a resume needs."""

from __future__ import annotations

import torch

from models.cnn import build_model
from models.optim import build_optimizer, build_schedule
from store.artifacts import TrainingState, load_checkpoint, load_weights, save_checkpoint, save_weights


def _trained_parts(optimizer_spec):
    torch.manual_seed(0)
    model = build_model({"arch": "lenet5"}, (1, 32, 32), 10)
    optimizer = build_optimizer(optimizer_spec, model.parameters())
    schedule = build_schedule({"type": "exponential", "k": 0.1, "unit": "step"}, optimizer, 10)
    for _ in range(3):
        model(torch.randn(4, 1, 32, 32)).sum().backward()
        optimizer.step()
        schedule.step()
    return model, optimizer, schedule


def test_checkpoint_round_trip_restores_optimizer_and_schedule(tmp_path):
    model, optimizer, schedule = _trained_parts({"type": "adam"})
    state = TrainingState(
        epoch=2,
        step=3,
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        scheduler=schedule.state_dict(),
        rng=torch.get_rng_state(),
        extra={"best_val_acc": 0.5},
    )
    save_checkpoint(tmp_path / "c.safetensors", state)
    loaded = load_checkpoint(tmp_path / "c.safetensors")

    fresh_model, fresh_optimizer, fresh_schedule = _trained_parts({"type": "adam"})
    fresh_model.load_state_dict(loaded.model)
    fresh_optimizer.load_state_dict(loaded.optimizer)
    fresh_schedule.load_state_dict(loaded.scheduler)
    for key, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(fresh_optimizer.state_dict()["state"][0][key], value)
    assert fresh_schedule.get_last_lr() == schedule.get_last_lr()
    assert (loaded.epoch, loaded.step, loaded.extra) == (2, 3, {"best_val_acc": 0.5})
    assert torch.equal(loaded.rng, state.rng)


def test_weights_carry_their_rebuild_info(tmp_path):
    model, _, _ = _trained_parts({"type": "sgd"})
    save_weights(tmp_path / "w.safetensors", model.state_dict(), {"num_classes": 10})
    state, meta = load_weights(tmp_path / "w.safetensors")
    assert meta == {"num_classes": 10}
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not list(tmp_path.glob("*.partial"))
