"""Downsampled curves keep their shape: first, last, every bucket's extremes, the global min and max."""

from __future__ import annotations

import math
import random

import pytest

from api.downsample import downsample_curve, min_max_downsample
from tests.factories import lenet_spec, training


def series(values, name="train_loss"):
    return [
        {"id": f"{i}-0", "step": i, "epoch": i / 10, "name": name, "value": v} for i, v in enumerate(values)
    ]


def test_keeps_first_last_minimum_and_maximum_within_the_budget():
    rng = random.Random(0)
    values = [math.exp(-i / 300) + rng.gauss(0, 0.02) for i in range(2000)]
    values[777] = 5.0  # a spike
    values[1500] = -1.0  # a dip
    points = series(values)

    thinned = min_max_downsample(points, 50)

    assert len(thinned) <= 50
    assert thinned[0] is points[0] and thinned[-1] is points[-1]
    kept = {p["step"] for p in thinned}
    assert {777, 1500} <= kept
    assert [p["step"] for p in thinned] == sorted(kept)  # original order


def test_short_series_come_back_whole_and_budgets_below_four_are_refused():
    points = series([3.0, 2.0, 1.0])
    assert min_max_downsample(points, 4) == points
    with pytest.raises(ValueError):
        min_max_downsample(series(range(10)), 3)


def test_each_series_is_thinned_on_its_own_and_merged_in_order():
    loss = series([1.0 / (i + 1) for i in range(400)])
    lr = series([0.1] * 400, name="lr")
    merged = sorted(loss + lr, key=lambda p: (p["step"], p["name"]))

    thinned = downsample_curve(merged, 10)

    assert sum(p["name"] == "train_loss" for p in thinned) <= 10
    assert sum(p["name"] == "lr" for p in thinned) <= 10
    assert [merged.index(p) for p in thinned] == sorted(merged.index(p) for p in thinned)


def test_the_metrics_endpoint_downsamples_a_finished_job(stack):
    job = stack.wait_finished(stack.submit(lenet_spec(training=training(epochs=3)))["id"])
    full = stack.http.get(f"/v1/jobs/{job['id']}/metrics").json()
    thin = stack.http.get(f"/v1/jobs/{job['id']}/metrics", params={"max_points": 4}).json()

    losses = [p for p in full["points"] if p["name"] == "train_loss"]
    thin_losses = [p for p in thin["points"] if p["name"] == "train_loss"]
    assert len(losses) > 4 >= len(thin_losses)
    assert thin_losses[0] == losses[0] and thin_losses[-1] == losses[-1]
    assert min(p["value"] for p in thin_losses) == min(p["value"] for p in losses)
    assert thin["last_id"] == full["last_id"]
    assert stack.http.get(f"/v1/jobs/{job['id']}/metrics", params={"max_points": 2}).status_code == 422
