"""training.augment through the service: an augmented job trains, and ?tta=flip predicts what eval_flip
measured, on a run and on an ensemble."""

from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.test_ensembles import create_ensemble, digits_test_split
from tests.factories import lenet_spec, training

AUGMENT = {"flip": True, "translate": 2, "eval_flip": True}


def predict(stack, path: str, inputs: np.ndarray, **params) -> np.ndarray:
    response = stack.http.post(f"{path}/predict", json={"inputs": inputs.tolist()}, params=params)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["probs"])


@pytest.fixture(scope="module")
def augmented_job(stack):
    spec = lenet_spec(
        name="augmented",
        optimizer={"type": "momentum", "lr": 0.02},
        training=training(epochs=2, batch_size=64, augment=AUGMENT),
        ensemble={"members": 2},
    )
    job = stack.wait_finished(stack.submit(spec)["id"], timeout=300)
    assert job["status"] == "succeeded", job["error"]
    return job


def test_an_augmented_job_trains_and_keeps_its_augmentation_in_the_spec(augmented_job):
    assert augmented_job["spec"]["training"]["augment"] == AUGMENT
    assert [run["test_acc"] > 0.1 for run in augmented_job["runs"]] == [True, True]


def test_tta_flip_is_the_mean_of_predicting_each_image_and_its_mirror(stack, augmented_job):
    x, y = digits_test_split()
    run = augmented_job["runs"][0]
    path = f"/v1/runs/{run['id']}"
    mean = (predict(stack, path, x) + predict(stack, path, x[..., ::-1].copy())) / 2
    flipped = predict(stack, path, x, tta="flip")
    assert np.allclose(flipped, mean, atol=1e-6)
    assert not np.allclose(flipped, predict(stack, path, x), atol=1e-4)
    # The run's test accuracy was measured with eval_flip: ?tta=flip's predictions score it.
    assert np.mean(flipped.argmax(1) == y) == pytest.approx(run["test_acc"], abs=1e-9)


def test_an_ensemble_predicts_with_tta_flip_too(stack, augmented_job):
    x, _ = digits_test_split()
    ensemble = create_ensemble(stack, [run["id"] for run in augmented_job["runs"]])
    path = f"/v1/ensembles/{ensemble['id']}"
    mean = (predict(stack, path, x[:100]) + predict(stack, path, x[:100, ..., ::-1].copy())) / 2
    assert np.allclose(predict(stack, path, x[:100], tta="flip"), mean, atol=1e-6)


@pytest.mark.parametrize("route", ["runs", "ensembles"])
def test_another_tta_is_a_422_at_the_parameter(stack, augmented_job, route):
    target = augmented_job["runs"][0]["id"] if route == "runs" else "no-such-ensemble"
    response = stack.http.post(
        f"/v1/{route}/{target}/predict", json={"inputs": [[[[0.0] * 8] * 8]]}, params={"tta": "rotate"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "tta"]
