"""GET /metrics: a Prometheus scrape shows jobs, queue, training and request latency move."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import lenet_spec, training


def scrape(stack) -> list:
    response = stack.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def value(samples, name: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include `labels` (0 when there is none)."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def check_scrapes_follow_a_job(stack) -> None:
    before = scrape(stack)
    job = stack.submit(lenet_spec(name="prometheus", training=training(epochs=3)))

    seen_throughput, seen_lag = 0.0, None
    deadline = time.monotonic() + 120
    while stack.job(job["id"])["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, "the job never finished"
        during = scrape(stack)
        assert value(during, "trainyard_queue_depth") >= 0
        seen_throughput = max(
            seen_throughput, value(during, "trainyard_training_samples_per_second", job_id=job["id"])
        )
        lag = [s for s in during if s.name == "trainyard_stream_lag_seconds"]
        if any(s.labels["job_id"] == job["id"] for s in lag):
            seen_lag = value(during, "trainyard_stream_lag_seconds", job_id=job["id"])
            assert value(during, "trainyard_jobs_running") >= 1
        time.sleep(0.05)
    finished = stack.job(job["id"])
    assert finished["status"] == "succeeded", finished["error"]
    after = scrape(stack)

    # While it trained: samples per second (lenet5 on digits on a CPU: well over 100) and a fresh stream.
    assert seen_throughput > 100
    assert seen_lag is not None and 0 <= seen_lag < 30

    succeeded = {"status": "succeeded", "kind": "train"}
    assert value(after, "trainyard_jobs", **succeeded) >= value(before, "trainyard_jobs", **succeeded) + 1
    count = "trainyard_job_duration_seconds_count"
    assert value(after, count, **succeeded) >= value(before, count, **succeeded) + 1
    took = datetime.fromisoformat(finished["finished_at"]) - datetime.fromisoformat(finished["started_at"])
    added = value(after, "trainyard_job_duration_seconds_sum", **succeeded) - value(
        before, "trainyard_job_duration_seconds_sum", **succeeded
    )
    assert added == pytest.approx(took.total_seconds(), abs=0.05)
    assert value(after, "trainyard_job_duration_seconds_bucket", le="+Inf", **succeeded) == value(
        after, count, **succeeded
    )

    for present in ("trainyard_queue_depth", "trainyard_jobs_running"):
        assert any(s.name == present for s in after)
    assert value(after, "trainyard_backend_up", backend="database") == 1
    assert value(after, "trainyard_backend_up", backend="redis") == 1

    # Polling the job was timed under its route template, never its raw path; scrapes are not timed.
    latency = "trainyard_http_request_duration_seconds_count"
    polled = {"method": "GET", "route": "/v1/jobs/{job_id}", "status": "200"}
    assert value(after, latency, **polled) > value(before, latency, **polled)
    assert value(after, latency, method="POST", route="/v1/jobs", status="202") >= 1
    routes = {s.labels["route"] for s in after if s.name == latency}
    assert not any(job["id"] in route for route in routes)
    assert "/metrics" not in routes


def test_scrapes_follow_a_job_on_sqlite(stack):
    check_scrapes_follow_a_job(stack)


def test_scrapes_follow_a_job_on_postgresql(pg_stack):
    # Job durations are computed in SQL, which differs between the two databases.
    check_scrapes_follow_a_job(pg_stack)


def test_unknown_paths_share_one_label(stack):
    for path in ("/v1/jobs/nope-1/metrics", "/nowhere/1", "/nowhere/2"):
        stack.http.get(path)
    samples = scrape(stack)
    latency = "trainyard_http_request_duration_seconds_count"
    assert value(samples, latency, route="/v1/jobs/{job_id}/metrics", status="404") >= 1
    assert value(samples, latency, route="unmatched", status="404") >= 2
    assert not any("nowhere" in s.labels.get("route", "") for s in samples)
