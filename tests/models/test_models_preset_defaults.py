"""A preset's own optimizer, lr and epochs fill what the spec leaves out, into the spec as stored; what the
client gives wins; layer lists keep the spec's own defaults; the catalog shows each preset's."""

import pytest
from pydantic import ValidationError

from models.catalog import catalog
from models.spec import PRESET_DEFAULTS, SGD, JobSpec, TrainingSpec

DIGITS = {"name": "digits"}
LAYERS = {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10}]}


def minimal(arch: str, **parts) -> JobSpec:
    return JobSpec.model_validate({"dataset": DIGITS, "model": {"arch": arch}, **parts})


def test_the_minimal_alexnet_spec_is_stored_with_alexnets_defaults():
    spec = minimal("alexnet")
    defaults = PRESET_DEFAULTS["alexnet"]
    assert spec.optimizer.type == defaults.optimizer and spec.training.epochs == defaults.epochs
    assert spec.optimizer.lr == defaults.lr.get(defaults.optimizer, spec.optimizer.lr)
    stored = spec.model_dump(mode="json")
    assert stored["optimizer"]["type"] == "adam" and stored["training"]["epochs"] == defaults.epochs
    assert JobSpec.model_validate(stored) == spec  # read back, the stored spec trains the same


def test_lenet5_and_layer_lists_keep_the_specs_own_defaults():
    for spec in (minimal("lenet5"), JobSpec.model_validate({"dataset": DIGITS, "model": LAYERS})):
        assert spec.optimizer == SGD(type="sgd")
        assert spec.training.epochs == TrainingSpec.model_fields["epochs"].default


def test_an_optimizer_without_lr_takes_the_presets_lr_for_that_type():
    for kind, lr in PRESET_DEFAULTS["alexnet"].lr.items():
        assert minimal("alexnet", optimizer={"type": kind}).optimizer.lr == lr
    # The spec's own defaults everywhere else: momentum's mu, a layer list's lr.
    assert minimal("alexnet", optimizer={"type": "momentum"}).optimizer.momentum == 0.9
    layers = JobSpec.model_validate({"dataset": DIGITS, "model": LAYERS, "optimizer": {"type": "sgd"}})
    assert layers.optimizer.lr == SGD.model_fields["lr"].default


def test_what_the_client_gives_wins():
    spec = minimal("alexnet", optimizer={"type": "sgd", "lr": 0.3}, training={"epochs": 2, "batch_size": 32})
    assert (spec.optimizer.type, spec.optimizer.lr, spec.training.epochs) == ("sgd", 0.3, 2)
    # A training block without epochs still gets the preset's.
    assert (
        minimal("alexnet", training={"batch_size": 32}).training.epochs == PRESET_DEFAULTS["alexnet"].epochs
    )
    # Parts given as models, not JSON, are read the same way.
    given = JobSpec(dataset=DIGITS, model={"arch": "alexnet"}, optimizer=SGD(type="sgd", lr=0.001))
    assert given.optimizer.lr == 0.001
    assert (
        JobSpec(dataset=DIGITS, model={"arch": "alexnet"}, optimizer=SGD(type="sgd")).optimizer.lr
        == (PRESET_DEFAULTS["alexnet"].lr["sgd"])
    )


def test_the_specs_checks_see_the_resolved_values():
    # alexnet's default lr is below 0.01: an eta_min of 0.01 is refused, as it would be if written out.
    with pytest.raises(ValidationError, match="eta_min"):
        minimal("alexnet", lr_schedule={"type": "cosine", "eta_min": 0.01})
    # Averaging must start before the last epoch: alexnet's default epochs count, not TrainingSpec's.
    last = PRESET_DEFAULTS["alexnet"].epochs
    with pytest.raises(ValidationError, match="averaging_start_epoch"):
        minimal("alexnet", ensemble={"param_averaging": "polyak", "averaging_start_epoch": last})


def test_the_catalog_shows_each_presets_defaults_as_validation_resolves_them():
    presets = {p["name"]: p for p in catalog()["presets"]}
    for arch, entry in presets.items():
        spec, defaults = minimal(arch), entry["defaults"]
        assert defaults["optimizer"] == spec.optimizer.model_dump(mode="json")
        assert defaults["epochs"] == spec.training.epochs
        assert set(defaults["lr"]) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
        for kind, lr in defaults["lr"].items():
            assert minimal(arch, optimizer={"type": kind}).optimizer.lr == lr
    assert presets["lenet5"]["defaults"]["optimizer"] == {"type": "sgd", "lr": 0.3}
    assert presets["alexnet"]["defaults"]["optimizer"]["type"] == "adam"
