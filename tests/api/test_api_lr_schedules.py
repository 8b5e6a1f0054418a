"""Cosine schedules through the API: the catalog offers them, bad parameters are 422s at the field."""

from __future__ import annotations

import pytest

from tests.factories import lenet_spec
from tests.in_process_api import InProcessApi


def test_the_catalog_offers_cosine_schedules_with_defaults_and_bounds(in_process_api: InProcessApi):
    schedules = {s["type"]: s for s in in_process_api.http.get("/v1/catalog").json()["schedules"]}
    cosine, restarts = schedules["cosine"]["params"], schedules["cosine_restarts"]["params"]

    assert cosine["t_max"] | {"description": None} == {
        "type": "integer",
        "nullable": True,
        "default": None,
        "required": False,
        "description": None,
        "minimum": 1,
    }
    assert "whole training" in cosine["t_max"]["description"]
    assert (cosine["eta_min"]["default"], cosine["eta_min"]["minimum"]) == (0.0, 0.0)
    assert (restarts["t_0"]["required"], restarts["t_0"]["minimum"]) == (True, 1)
    assert (restarts["t_mult"]["default"], restarts["t_mult"]["minimum"]) == (1, 1)
    for params in (cosine, restarts):
        assert params["unit"]["choices"] == ["epoch", "step"] and params["unit"]["default"] == "epoch"
        assert params["warmup_steps"]["default"] == 0
    assert "cos(pi*t/t_max)" in schedules["cosine"]["description"]
    assert "t_mult" in schedules["cosine_restarts"]["description"]


@pytest.mark.parametrize(
    ("schedule", "loc"),
    [
        ({"type": "cosine", "t_max": 0}, ["lr_schedule", "cosine", "t_max"]),
        ({"type": "cosine", "eta_min": -0.01}, ["lr_schedule", "cosine", "eta_min"]),
        ({"type": "cosine", "unit": "batch"}, ["lr_schedule", "cosine", "unit"]),
        ({"type": "cosine", "period": 5}, ["lr_schedule", "cosine", "period"]),
        ({"type": "cosine_restarts"}, ["lr_schedule", "cosine_restarts", "t_0"]),
        ({"type": "cosine_restarts", "t_0": 0}, ["lr_schedule", "cosine_restarts", "t_0"]),
        ({"type": "cosine_restarts", "t_0": 2, "t_mult": 0}, ["lr_schedule", "cosine_restarts", "t_mult"]),
        ({"type": "cosine_restarts", "t_0": 2, "t_mult": 1.5}, ["lr_schedule", "cosine_restarts", "t_mult"]),
        (
            {"type": "cosine_restarts", "t_0": 2, "warmup_steps": -1},
            ["lr_schedule", "cosine_restarts", "warmup_steps"],
        ),
        # The optimizer's lr is 0.1: a floor at or above it would make the cosine rise, not anneal.
        ({"type": "cosine", "eta_min": 0.1}, ["lr_schedule"]),
        ({"type": "cosine_restarts", "t_0": 2, "eta_min": 0.5}, ["lr_schedule"]),
    ],
)
def test_a_bad_cosine_schedule_is_a_422_at_its_field_and_nothing_is_queued(
    in_process_api: InProcessApi, schedule, loc
):
    jobs_before, queued_before = (
        in_process_api.http.get("/v1/jobs").json()["items"],
        in_process_api.queued_messages(),
    )
    response = in_process_api.http.post("/v1/jobs", json=lenet_spec(lr_schedule=schedule))

    assert response.status_code == 422, response.text
    assert ["body", *loc] in [error["loc"] for error in response.json()["detail"]], response.text
    assert in_process_api.http.get("/v1/jobs").json()["items"] == jobs_before
    assert in_process_api.queued_messages() == queued_before


def test_good_cosine_schedules_are_accepted(in_process_api: InProcessApi):
    for schedule in (
        {"type": "cosine"},
        {"type": "cosine", "t_max": 3, "eta_min": 0.001, "unit": "step", "warmup_steps": 2},
        {"type": "cosine_restarts", "t_0": 1, "t_mult": 2, "eta_min": 0.01},
    ):
        job = in_process_api.submit(lenet_spec(lr_schedule=schedule))
        assert job["spec"]["lr_schedule"]["type"] == schedule["type"]
