"""Each optimizer with its catalog defaults trains LeNet-5 on digits to 95% test accuracy in 15 epochs."""

from __future__ import annotations

import pytest

from tests.factories import lenet_spec

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
EPOCHS = 15
TARGET_ACC = 0.95
# One worker trains the six jobs back to back (~5-10 s each on a loaded 2-core machine); the last
# one waits for all the others.
WAIT_S = 240


def default_optimizer_spec(optimizer: str) -> dict:
    """The user's first job: only the optimizer's name, everything else left to the defaults."""
    return lenet_spec(
        name=f"lenet5-{optimizer}-defaults",
        optimizer={"type": optimizer},
        training={"epochs": EPOCHS, "seed": 0},  # batch_size: the TrainingSpec default
    )


@pytest.fixture(scope="module")
def catalog_defaults(stack) -> dict[str, dict]:
    """{optimizer: {param: default}} as GET /v1/catalog reports them."""
    optimizers = stack.http.get("/v1/catalog").json()["optimizers"]
    return {o["type"]: {name: p["default"] for name, p in o["params"].items()} for o in optimizers}


@pytest.fixture(scope="module")
def default_optimizer_jobs(stack) -> dict[str, str]:
    """All six jobs submitted before any is waited for, so the worker never idles between them."""
    return {optimizer: stack.submit(default_optimizer_spec(optimizer))["id"] for optimizer in OPTIMIZERS}


def test_the_catalog_lists_the_six_optimizers(catalog_defaults):
    assert sorted(catalog_defaults) == sorted(OPTIMIZERS)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_catalog_defaults_reach_95_percent_in_15_epochs(
    stack, catalog_defaults, default_optimizer_jobs, optimizer
):
    job = stack.wait_finished(default_optimizer_jobs[optimizer], timeout=WAIT_S)
    assert job["status"] == "succeeded", job["error"]
    # The job trained with exactly the defaults the catalog advertises (the stored spec is the
    # validated one, defaults filled in).
    assert job["spec"]["optimizer"] == {"type": optimizer, **catalog_defaults[optimizer]}
    assert job["spec"]["training"]["epochs"] == EPOCHS
    assert job["metrics"]["test_acc"] >= TARGET_ACC, (optimizer, job["metrics"])
