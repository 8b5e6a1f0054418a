"""training.augment on a GPU: the batches are changed there, with the draws a CPU run makes.

Skipped on machines without CUDA (CI has none); run on a lent GPU with
`python -m pytest tests/worker/test_augment_cuda.py`.
"""

from __future__ import annotations

import pytest
import torch

from models.augment import augment_batch, batch_generator
from models.datasets import load_splits
from models.spec import AugmentSpec
from tests.factories import job_spec, training
from worker.training import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def test_a_gpu_batch_is_augmented_on_the_gpu_as_the_cpu_would():
    spec = AugmentSpec(flip=True, translate=3)
    x = torch.randn(256, 3, 16, 16)
    on_gpu = augment_batch(x.to(CUDA), spec, batch_generator(5, 2, 7))
    assert on_gpu.device.type == "cuda"
    assert torch.equal(on_gpu.cpu(), augment_batch(x, spec, batch_generator(5, 2, 7)))


def test_an_augmented_run_trains_on_the_gpu():
    spec = job_spec(
        optimizer={"type": "momentum", "lr": 0.05, "momentum": 0.9},
        training=training(epochs=8, batch_size=64, augment={"translate": 1}),
    )
    result = train(spec, load_splits(spec.dataset, spec.model), device=CUDA)
    assert result.metrics["test_acc"] >= 0.8
