"""training.augment in the loop called directly: resume, stacked members, evaluation on unchanged images."""

from __future__ import annotations

import pytest
import torch

from models.datasets import load_splits
from store.artifacts import load_checkpoint
from tests.factories import Recorder, job_spec, training
from worker.bookkeeping import evaluate
from worker.training import train
from worker.vectorized import train_members, train_sequential

CPU = torch.device("cpu")
AUGMENT = {"flip": True, "translate": 2}


def augmented_spec(augment: dict | None = AUGMENT, **parts):
    return job_spec(
        optimizer={"type": "momentum", "lr": 0.02, "momentum": 0.9},
        training=training(epochs=2, batch_size=64, augment=augment),
        **parts,
    )


@pytest.fixture(scope="module")
def splits():
    spec = augmented_spec()
    return load_splits(spec.dataset, spec.model)


@pytest.fixture(scope="module")
def augmented(splits, tmp_path_factory):
    recorder = Recorder(tmp_path_factory.mktemp("augmented"))
    return train(augmented_spec(), splits, recorder, device=CPU), recorder


def test_augmentation_changes_what_is_trained(augmented, splits):
    plain = train(augmented_spec(None), splits, device=CPU)
    result, _ = augmented
    assert not torch.equal(plain.model[0].weight, result.model[0].weight)


def test_a_resumed_augmented_run_equals_the_uninterrupted_one(augmented, splits):
    whole, recorder = augmented
    resumed = train(augmented_spec(), splits, device=CPU, resume=load_checkpoint(recorder.checkpoints[1]))
    assert resumed.steps == whole.steps
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    assert resumed.metrics == whole.metrics


def test_metrics_come_from_the_images_as_they_are(augmented, splits):
    result, _ = augmented
    assert evaluate(result.model, *splits.test) == (
        pytest.approx(result.metrics["test_loss"]),
        result.metrics["test_acc"],
    )
    assert evaluate(result.model, *splits.val)[1] == result.metrics["val_acc"]


def test_eval_flip_metrics_average_each_image_with_its_mirror(augmented, splits):
    result, _ = augmented
    x, y = splits.test
    with torch.inference_mode():
        model = result.model.eval()
        probs = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    expected_acc = (probs.argmax(1) == y).sum().item() / len(y)
    expected_loss = torch.nn.functional.nll_loss(probs.log(), y).item()
    loss, acc = evaluate(result.model, x, y, eval_flip=True)
    assert (loss, acc) == (pytest.approx(expected_loss, rel=1e-5), expected_acc)
    # A run asking for it reports those metrics (its weights are the same: eval_flip trains nothing else).
    flipped = train(augmented_spec(AUGMENT | {"eval_flip": True}), splits, device=CPU)
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(flipped.model.state_dict()[name], tensor), name
    assert flipped.metrics["test_acc"] == expected_acc
    assert flipped.metrics["test_loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert flipped.metrics["val_acc"] == evaluate(result.model, *splits.val, eval_flip=True)[1]


def test_stacked_members_draw_each_its_own_augmentation_as_its_own_run_would(splits):
    spec = augmented_spec(ensemble={"members": 2})
    together = train_members(spec, splits, [Recorder(), Recorder()], device=CPU)
    apart = train_sequential(spec, splits, [Recorder(), Recorder()], device=CPU)
    for member in (0, 1):
        for name, tensor in apart[member].model.state_dict().items():
            # vmap's batched kernels sum in another order (tests/worker/test_vectorized.py): float tolerance.
            torch.testing.assert_close(
                together[member].model.state_dict()[name], tensor, rtol=1e-4, atol=1e-5, msg=name
            )
