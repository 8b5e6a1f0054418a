"""Malformed specs: each a 422 naming the field, and nothing stored or queued."""

from __future__ import annotations

import pytest

from tests.factories import lenet_spec, training

conv = {"type": "conv", "out_channels": 6, "kernel_size": 5}
flatten = {"type": "flatten"}

# (case, spec, the field path the 422 must name)
BAD_SPECS = [
    ("epochs as text", lenet_spec(training=training(epochs="ten")), ["body", "training", "epochs"]),
    ("zero epochs", lenet_spec(training=training(epochs=0)), ["body", "training", "epochs"]),
    ("too many epochs", lenet_spec(training=training(epochs=10**6)), ["body", "training", "epochs"]),
    ("negative batch", lenet_spec(training=training(batch_size=-1)), ["body", "training", "batch_size"]),
    ("negative seed", lenet_spec(training=training(seed=-3)), ["body", "training", "seed"]),
    ("negative lr", lenet_spec(optimizer={"type": "sgd", "lr": -0.1}), ["body", "optimizer", "sgd", "lr"]),
    ("zero lr", lenet_spec(optimizer={"type": "sgd", "lr": 0}), ["body", "optimizer", "sgd", "lr"]),
    ("unknown optimizer", lenet_spec(optimizer={"type": "lbfgs"}), ["body", "optimizer"]),
    (
        "parameter of another optimizer",
        lenet_spec(optimizer={"type": "sgd", "beta1": 0.9}),
        ["body", "optimizer", "sgd", "beta1"],
    ),
    (
        "momentum of 1",
        lenet_spec(optimizer={"type": "momentum", "momentum": 1.0}),
        ["body", "optimizer", "momentum", "momentum"],
    ),
    ("unknown schedule", lenet_spec(lr_schedule={"type": "cyclic"}), ["body", "lr_schedule"]),
    (
        "negative decay",
        lenet_spec(lr_schedule={"type": "exponential", "k": -0.1}),
        ["body", "lr_schedule", "exponential", "k"],
    ),
    (
        "step schedule without step_size",
        lenet_spec(lr_schedule={"type": "step"}),
        ["body", "lr_schedule", "step", "step_size"],
    ),
    (
        "bad unit",
        lenet_spec(lr_schedule={"type": "inverse_time", "k": 0.1, "unit": "hour"}),
        ["body", "lr_schedule", "inverse_time", "unit"],
    ),
    ("dropout of 1", lenet_spec(regularization={"dropout": 1.0}), ["body", "regularization", "dropout"]),
    (
        "unknown dropout mode",
        lenet_spec(regularization={"dropout": 0.5, "dropout_mode": "gaussian"}),
        ["body", "regularization", "dropout_mode"],
    ),
    (
        "negative weight decay",
        lenet_spec(regularization={"weight_decay": -1e-4}),
        ["body", "regularization", "weight_decay"],
    ),
    ("unknown dataset", lenet_spec(dataset={"name": "imagenet"}), ["body", "dataset"]),
    ("unknown preset", lenet_spec(model={"arch": "resnet50"}), ["body", "model", "arch"]),
    (
        "unknown activation",
        lenet_spec(model={"arch": "lenet5", "activation": "swish"}),
        ["body", "model", "activation"],
    ),
    ("both preset and layers", lenet_spec(model={"arch": "lenet5", "layers": [flatten]}), ["body", "model"]),
    (
        "unknown layer type",
        lenet_spec(model={"layers": [{"type": "attention"}]}),
        ["body", "model", "layers", 0],
    ),
    (
        "conv without out_channels",
        lenet_spec(model={"layers": [{"type": "conv"}]}),
        ["body", "model", "layers", 0, "conv", "out_channels"],
    ),
    (
        "pooling below 1x1",
        lenet_spec(
            dataset={"name": "digits", "image_size": 8},
            model={
                "layers": [
                    conv,
                    *[{"type": "maxpool", "kernel_size": 2}] * 3,
                    flatten,
                    {"type": "linear", "out_features": 10},
                ]
            },
        ),
        ["body", "model", "layers", 3],  # 8x8 -> conv 4x4 -> 2x2 -> 1x1 -> nothing
    ),
    (
        "kernel larger than the image",
        lenet_spec(
            dataset={"name": "digits", "image_size": 8},
            model={
                "layers": [
                    {"type": "conv", "out_channels": 4, "kernel_size": 9},
                    flatten,
                    {"type": "linear", "out_features": 10},
                ]
            },
        ),
        ["body", "model", "layers", 0],
    ),
    (
        "linear without flatten",
        lenet_spec(model={"layers": [conv, {"type": "linear", "out_features": 10}]}),
        ["body", "model", "layers", 1],
    ),
    (
        "wrong number of classes",
        lenet_spec(model={"layers": [conv, flatten, {"type": "linear", "out_features": 7}]}),
        ["body", "model", "layers", 2],
    ),
    (
        "lenet5 on 8x8 inputs",
        lenet_spec(dataset={"name": "digits", "image_size": 8}),
        ["body", "dataset", "image_size"],
    ),
    ("missing model", {k: v for k, v in lenet_spec().items() if k != "model"}, ["body", "model"]),
    ("missing dataset", {k: v for k, v in lenet_spec().items() if k != "dataset"}, ["body", "dataset"]),
    ("mass assignment of status", lenet_spec(status="succeeded"), ["body", "status"]),
    ("unknown training field", lenet_spec(training=training(epoch=3)), ["body", "training", "epoch"]),
    (
        "NaN learning rate",
        lenet_spec(optimizer={"type": "adam", "lr": "NaN"}),
        ["body", "optimizer", "adam", "lr"],
    ),
    ("spec not an object", ["lenet5"], ["body"]),
    (
        "preset dropout on a layer list",
        lenet_spec(
            model={"layers": [flatten, {"type": "linear", "out_features": 10}]},
            regularization={"dropout": 0.5},
        ),
        ["body", "regularization"],
    ),
]


@pytest.mark.parametrize("spec, loc", [case[1:] for case in BAD_SPECS], ids=[case[0] for case in BAD_SPECS])
def test_bad_spec_is_422_with_the_field_path(in_process_api, spec, loc):
    response = in_process_api.http.post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(error["loc"][: len(loc)] == loc for error in errors), errors
    assert all(error["msg"] for error in errors)


def test_bad_specs_leave_nothing_behind(in_process_api):
    # Runs after the cases above (same module): the app has no worker, so a queued message would stay.
    assert len(BAD_SPECS) >= 20
    assert in_process_api.http.get("/v1/jobs").json()["items"] == []
    assert in_process_api.queued_messages() == 0


def test_not_json_is_422(in_process_api):
    response = in_process_api.http.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_catalog_lists_every_choice(in_process_api):
    catalog = in_process_api.http.get("/v1/catalog").json()
    assert {p["name"] for p in catalog["presets"]} >= {"lenet5", "alexnet"}
    assert [o["type"] for o in catalog["optimizers"]] == [
        "sgd",
        "momentum",
        "nesterov",
        "adagrad",
        "rmsprop",
        "adam",
    ]
    assert {s["type"] for s in catalog["schedules"]} == {
        "constant",
        "step",
        "exponential",
        "inverse_time",
        "cosine",
        "cosine_restarts",
    }
    assert {d["type"] for d in catalog["datasets"]} >= {"digits", "synthetic"}
    assert catalog["dropout_modes"] == ["inverted", "vanilla"]


def test_dataset_without_its_files_is_refused(in_process_api):
    response = in_process_api.http.post("/v1/jobs", json=lenet_spec(dataset={"name": "mnist"}))
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "dataset", "name"]
    assert "train-images-idx3-ubyte" in error["msg"]


@pytest.mark.parametrize(
    ("augment", "loc"),
    [
        ({"translate": 9}, ["translate"]),
        ({"translate": -1}, ["translate"]),
        ({"translate": 1.5}, ["translate"]),
        ({"flip": "sometimes"}, ["flip"]),
        ({"eval_flip": 3}, ["eval_flip"]),
        ({"rotate": 10}, ["rotate"]),
    ],
)
def test_bad_augmentation_is_422_at_its_field_with_nothing_queued(in_process_api, augment, loc):
    response = in_process_api.http.post("/v1/jobs", json=lenet_spec(training=training(augment=augment)))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "training", "augment", *loc]
    assert in_process_api.queued_messages() == 0
