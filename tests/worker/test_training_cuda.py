"""The training engine on a GPU: bf16 autocast and channels_last there, numbers that hold back on the CPU.

Skipped on machines without CUDA (CI has none); run on a lent GPU with
`python -m pytest tests/worker/test_training_cuda.py`.
"""

from __future__ import annotations

import pytest
import torch

from models.cnn import build_model
from models.datasets import load_splits
from models.spec import EnsembleSpec
from tests.factories import Recorder, job_spec, training
from worker.bookkeeping import evaluate
from worker.training import train
from worker.vectorized import choose_strategy, train_members, train_sequential

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")
MOMENTUM = {"type": "momentum", "lr": 0.05, "momentum": 0.9}


def test_lenet5_trains_on_the_gpu_with_bf16_autocast_and_channels_last():
    spec = job_spec(optimizer=MOMENTUM, training=training(epochs=8, batch_size=64))
    splits = load_splits(spec.dataset, spec.model)

    result = train(spec, splits, device=CUDA)

    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    assert result.engine.channels_last
    assert result.engine.bf16_autocast == bf16
    assert result.metrics["test_acc"] >= 0.9
    # The weights come back in the ordinary layout and in float32, whatever the steps ran in.
    for tensor in result.model.state_dict().values():
        assert tensor.is_contiguous()
        assert tensor.dtype in (torch.float32, torch.int64)


def test_gpu_trained_weights_evaluate_the_same_on_the_cpu():
    spec = job_spec(optimizer=MOMENTUM, training=training(epochs=4, batch_size=64))
    splits = load_splits(spec.dataset, spec.model)
    result = train(spec, splits, device=CUDA)

    cpu_model = build_model(spec.model, splits.input_shape, splits.num_classes)
    cpu_model.load_state_dict({k: v.cpu() for k, v in result.model.state_dict().items()})
    _, cpu_acc = evaluate(cpu_model, *splits.test)

    # Evaluation runs without autocast on both, but cuDNN may use TF32 for float32 convolutions and sums in
    # another order than oneDNN: an image or two on a near-tie may flip, no more.
    assert abs(cpu_acc - result.metrics["test_acc"]) <= 2 / len(splits.test[0]) + 1e-9


def test_vectorized_members_train_on_the_gpu_like_members_trained_one_by_one():
    spec = job_spec(
        optimizer=MOMENTUM,
        training=training(epochs=4, batch_size=64),
        ensemble={"members": 3, "strategy": "vmap"},
    )
    splits = load_splits(spec.dataset, spec.model)

    vectorized = train_members(spec, splits, [Recorder() for _ in range(3)], device=CUDA)
    one_by_one = train_sequential(spec, splits, [Recorder() for _ in range(3)], device=CUDA)

    assert choose_strategy(spec.model_copy(update={"ensemble": EnsembleSpec(members=3)}), CUDA) == "vmap"
    for together, alone in zip(vectorized, one_by_one, strict=True):
        # bf16 autocast rounds differently in batched and single kernels: the same training, not the same
        # bits, so the members' accuracies agree within a few test images rather than exactly.
        assert together.metrics["test_acc"] >= 0.9
        assert abs(together.metrics["test_acc"] - alone.metrics["test_acc"]) <= 0.03
