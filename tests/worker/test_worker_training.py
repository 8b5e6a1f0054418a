"""The training loop called directly (no service): memory format, compile, resume and divergence."""

from __future__ import annotations

import logging
import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.cnn import build_model
from models.datasets import Splits, load_splits
from models.optim import build_optimizer
from store.artifacts import load_checkpoint, load_weights, save_weights
from store.states import StopReason
from tests.factories import Recorder, job_spec, training
from worker.engine import wants_channels_last
from worker.reporter import DIVERGENCE_FACTOR, Diverged, Stopped
from worker.training import epoch_order, train

CPU = torch.device("cpu")
# A network small enough that torch.compile takes seconds, not minutes.
TINY_LAYERS = [
    {"type": "conv", "out_channels": 4, "kernel_size": 3},
    {"type": "activation", "fn": "relu"},
    {"type": "flatten"},
    {"type": "linear", "out_features": 10},
]


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.eval()(x)


def test_channels_last_is_chosen_for_conv_nets_whose_batch_norms_it_does_not_slow():
    shape = (1, 32, 32)
    assert wants_channels_last(build_model({"arch": "lenet5"}, shape, 10), CPU)
    mlp = build_model({"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10}]}, shape, 10)
    assert not wants_channels_last(mlp, CPU)
    # lenet5's first batch norm has 6 channels: NHWC batch norm is slow over so few on the CPU only.
    with_batchnorm = build_model({"arch": "lenet5", "batchnorm": True}, shape, 10)
    assert not wants_channels_last(with_batchnorm, CPU)
    assert wants_channels_last(with_batchnorm, torch.device("cuda"))
    wide = [
        {"type": "conv", "out_channels": 32, "kernel_size": 3},
        {"type": "batchnorm"},
        {"type": "flatten"},
        {"type": "linear", "out_features": 10},
    ]
    assert wants_channels_last(build_model({"layers": wide}, shape, 10), CPU)


def test_channels_last_and_eager_give_the_same_loss_curve():
    spec = job_spec(training=training(batch_size=64))
    splits = load_splits(spec.dataset, spec.model)
    runs = {}
    for channels_last in (False, None):  # None: the engine's own choice, channels_last on the CPU
        recorder = Recorder()
        result = train(spec, splits, recorder, device=CPU, report_every=1, channels_last=channels_last)
        runs[result.engine.channels_last] = (recorder.losses, result.metrics)
    assert set(runs) == {False, True}
    (nchw_curve, nchw_metrics), (nhwc_curve, nhwc_metrics) = runs[False], runs[True]
    assert len(nchw_curve) == 2 * math.ceil(len(splits.train[0]) / 64)
    assert nhwc_curve == pytest.approx(nchw_curve, rel=1e-4)
    assert nhwc_metrics["val_acc"] == pytest.approx(nchw_metrics["val_acc"], abs=1.5 / len(splits.val[0]))
    assert nhwc_metrics["test_acc"] == pytest.approx(nchw_metrics["test_acc"], abs=1.5 / len(splits.test[0]))


def test_weights_saved_from_a_channels_last_run_load_into_a_plain_model(tmp_path):
    spec = job_spec(training=training(epochs=1, batch_size=64))
    splits = load_splits(spec.dataset, spec.model)
    recorder = Recorder(tmp_path)
    result = train(spec, splits, recorder, device=CPU)
    assert result.engine.channels_last and not result.engine.bf16_autocast  # bf16 is for CUDA only
    x_test = splits.test[0]
    # The epoch's checkpoint was taken from the channels_last model (non-contiguous conv weights).
    from_checkpoint = build_model(spec.model, splits.input_shape, splits.num_classes)
    from_checkpoint.load_state_dict(load_checkpoint(recorder.checkpoints[1]).model)
    save_weights(tmp_path / "member-0.safetensors", result.model.state_dict(), {})
    from_weights = build_model(spec.model, splits.input_shape, splits.num_classes)
    from_weights.load_state_dict(load_weights(tmp_path / "member-0.safetensors")[0])
    expected = outputs(result.model, x_test)
    assert torch.equal(outputs(from_checkpoint, x_test), expected)
    assert torch.equal(outputs(from_weights, x_test), expected)


def test_resume_mid_run_reproduces_the_uninterrupted_run_exactly(tmp_path):
    # Momentum (optimizer state), a decaying lr (schedule state) and dropout (RNG state) all carry over.
    spec = job_spec(
        optimizer={"type": "momentum", "lr": 0.02, "momentum": 0.9},
        lr_schedule={"type": "exponential", "k": 0.2, "unit": "epoch"},
        regularization={"dropout": 0.3},
        training=training(epochs=3, batch_size=64),
    )
    splits = load_splits(spec.dataset, spec.model)
    recorder = Recorder(tmp_path)
    whole = train(spec, splits, recorder, device=CPU)
    resumed = train(spec, splits, device=CPU, resume=load_checkpoint(recorder.checkpoints[1]))
    assert resumed.steps == whole.steps
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    assert resumed.metrics == whole.metrics


def test_divergence_is_reported_at_the_step_it_happens():
    spec = job_spec(
        model={"arch": "lenet5", "activation": "relu"},
        optimizer={"type": "sgd", "lr": 5.0},
        training=training(batch_size=64),
    )
    splits = load_splits(spec.dataset, spec.model)
    # The reference: the same initial weights and batches in a plain loop, every loss read at once.
    torch.manual_seed(0)
    model = build_model(spec.model, splits.input_shape, splits.num_classes)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    x, y = splits.train
    order = epoch_order(len(x), 0, 0, CPU)
    losses = []
    for batch in range(10):
        idx = order[batch * 64 : (batch + 1) * 64]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    expected = next(
        i + 1
        for i, loss in enumerate(losses)
        if not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * losses[0]
    )
    assert 1 < expected < 10  # inside the first report window: the step is exact, not the window's end

    with pytest.raises(Diverged) as diverged:
        train(spec, splits, device=CPU, report_every=10)
    assert diverged.value.step == expected
    assert f"diverged at step {expected}" in str(diverged.value)


@pytest.mark.timeout(900)  # a cold torch.compile on a loaded 2-core machine
def test_a_compiled_run_trains_resumes_and_saves_plain_weights(tmp_path):
    spec = job_spec(model={"layers": TINY_LAYERS}, training=training(batch_size=64, compile=True))
    splits = load_splits(spec.dataset, spec.model)
    recorder = Recorder(tmp_path)
    result = train(spec, splits, recorder, device=CPU)
    assert result.engine.compiled
    assert result.metrics["test_acc"] > 0.5  # ten classes: it learned something

    plain = build_model(spec.model, splits.input_shape, splits.num_classes)
    checkpoint = load_checkpoint(recorder.checkpoints[2])
    assert checkpoint.model.keys() == plain.state_dict().keys()  # no "_orig_mod." prefix
    plain.load_state_dict(checkpoint.model)
    assert torch.equal(outputs(plain, splits.test[0]), outputs(result.model, splits.test[0]))

    resumed = train(spec, splits, device=CPU, resume=load_checkpoint(recorder.checkpoints[1]))
    assert resumed.engine.compiled and resumed.steps == result.steps
    for name, tensor in result.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor)


def test_a_failing_compile_falls_back_to_eager(monkeypatch, caplog):
    def broken_compile(model, **options):
        def forward(*args):
            raise RuntimeError("no C++ compiler found")

        return forward

    monkeypatch.setattr(torch, "compile", broken_compile)
    spec = job_spec(model={"layers": TINY_LAYERS}, training=training(epochs=1, batch_size=64))
    splits = load_splits(spec.dataset, spec.model)
    eager = train(spec, splits, device=CPU)
    compiled = job_spec(
        model={"layers": TINY_LAYERS}, training=training(epochs=1, batch_size=64, compile=True)
    )
    with caplog.at_level(logging.WARNING, logger="worker.engine"):
        fallen_back = train(compiled, splits, device=CPU)
    assert not fallen_back.engine.compiled
    assert "no C++ compiler found" in caplog.text
    for name, tensor in eager.model.state_dict().items():
        assert torch.equal(fallen_back.model.state_dict()[name], tensor), name


def test_the_loop_keeps_reporting_while_it_compiles(monkeypatch):
    # A compile blocks the loop for ~30 s, longer than a worker's lease: the reporter must still be called
    # (its heartbeat keeps the job), and a cancel it hears meanwhile must stop the job.
    def slow_compile(model, **options):
        time.sleep(3.5)
        return model

    class CancelsWhileCompiling(Recorder):
        empty_reports = 0

        def report(self, points, progress):
            if points:
                return None
            self.empty_reports += 1
            return StopReason.CANCELLED if self.empty_reports == 3 else None

    monkeypatch.setattr(torch, "compile", slow_compile)
    spec = job_spec(model={"layers": TINY_LAYERS}, training=training(batch_size=64, compile=True))
    reporter = CancelsWhileCompiling()
    with pytest.raises(Stopped, match="cancelled"):
        train(spec, load_splits(spec.dataset, spec.model), reporter, device=CPU)
    assert reporter.empty_reports == 3


def test_inputs_made_per_batch_on_the_device_train_exactly_as_stored_float32_inputs_did():
    # digits is held as uint8 at 8x8; lenet5 gets each batch resized to 32x32 and normalised as it trains.
    splits = load_splits({"name": "digits"}, {"arch": "lenet5"})
    assert splits.train_raw[0].dtype == torch.uint8 and splits.train_raw[0].shape[1:] == (1, 8, 8)
    # What training held before: every split as float32 network inputs, made once (mean 0, std 1 left).
    stored = Splits(
        splits.train, splits.val, splits.test, [0.0], [1.0], 10, splits.input_shape, splits.input_shape
    )
    spec = job_spec(training=training(epochs=2, batch_size=64))
    per_batch, held = train(spec, splits, device=CPU), train(spec, stored, device=CPU)
    assert per_batch.metrics == held.metrics
    assert all(
        torch.equal(a, b) for a, b in zip(per_batch.model.parameters(), held.model.parameters(), strict=True)
    )
