"""The README's example specs stay valid as the spec grows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.cnn import inspect_model
from models.spec import JobSpec

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_spec_validates_and_builds(path):
    spec = JobSpec.model_validate(json.loads(path.read_text()))
    assert inspect_model(spec).params > 0


def test_there_are_examples():
    assert len(EXAMPLES) >= 2
