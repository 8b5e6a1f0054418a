"""The README's example specs (and example sweeps) stay valid as the spec grows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.cnn import inspect_model
from models.spec import JobSpec
from models.sweeps import SweepSpec

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.json"))
JOBS = [path for path in EXAMPLES if not path.name.startswith("sweep-")]
SWEEPS = [path for path in EXAMPLES if path.name.startswith("sweep-")]


@pytest.mark.parametrize("path", JOBS, ids=[p.name for p in JOBS])
def test_example_spec_validates_and_builds(path):
    spec = JobSpec.model_validate(json.loads(path.read_text()))
    assert inspect_model(spec).params > 0


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_example_sweep_validates_and_its_points_build(path):
    sweep = SweepSpec.model_validate(json.loads(path.read_text()))
    sweep.check_points()
    assert inspect_model(sweep.base).params > 0


def test_there_are_examples():
    assert len(JOBS) >= 2 and SWEEPS
