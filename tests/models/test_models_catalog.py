"""The catalog lists every choice with the schema's own defaults, as JSON."""

import json

from models.catalog import catalog
from models.spec import Adam, StepSchedule


def test_catalog_is_json_and_reads_defaults_from_the_schema():
    entries = json.loads(json.dumps(catalog()))
    optimizers = {o["type"]: o for o in entries["optimizers"]}
    assert set(optimizers) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
    assert optimizers["adam"]["params"]["beta2"]["default"] == Adam.model_fields["beta2"].default
    assert "v = mu*v - lr*dx" in optimizers["momentum"]["description"]
    schedules = {s["type"]: s for s in entries["schedules"]}
    assert schedules["step"]["params"]["gamma"]["default"] == StepSchedule.model_fields["gamma"].default
    assert schedules["step"]["params"]["step_size"]["required"] is True
    assert {p["name"] for p in entries["presets"]} == {"lenet5", "alexnet"}
    assert {d["type"] for d in entries["datasets"]} == {"digits", "synthetic"}
    assert entries["dropout_modes"] == ["inverted", "vanilla"]
    assert "none" in entries["activations"]
