"""Retention with real processes: a worker's recovery loop deletes a finished job once it is older than
TRAINYARD_RETENTION_DAYS, with its files."""

from __future__ import annotations

import time

import pytest

from tests.factories import lenet_spec, training
from tests.live_stack import TEST_SETTINGS, LiveStack
from trainyard.services import start_private_redis

# Short, as the test waits it out; long enough that the finished job's folder is still there to be seen.
RETENTION_S = 6.0


@pytest.fixture(scope="module")
def short_retention(tmp_path_factory):
    """API and worker keeping finished jobs RETENTION_S, on a Redis of their own (their queue is theirs
    alone)."""
    home = tmp_path_factory.mktemp("retention-stack")
    server = start_private_redis(home / "redis")
    settings = TEST_SETTINGS | {"TRAINYARD_RETENTION_DAYS": str(RETENTION_S / 86_400)}
    live = LiveStack(home, f"sqlite:///{home / 'trainyard.db'}", server.url, settings)
    try:
        live.start_api()
        live.start_worker()
        yield live
    finally:
        live.stop()
        server.stop()


def test_a_finished_job_is_deleted_by_a_worker_once_older_than_the_retention(short_retention):
    live = short_retention
    job = live.wait_finished(live.submit(lenet_spec(training=training(epochs=1)))["id"])
    assert job["status"] == "succeeded", job["error"]
    folder = live.home / "artifacts" / "jobs" / job["id"]
    assert folder.is_dir()

    # Read through routes that are not cached: GET /v1/jobs/{id} keeps a finished job's answer for
    # api.job_cache.FINISHED_TTL_S (it never changes, save for this).
    run_url = f"/v1/runs/{job['runs'][0]['id']}"
    deadline = time.monotonic() + RETENTION_S + 90
    while live.http.get(run_url).status_code == 200:
        assert time.monotonic() < deadline, live.diagnostics()
        time.sleep(0.5)
    assert live.http.get(run_url).status_code == 404
    assert job["id"] not in [listed["id"] for listed in live.http.get("/v1/jobs").json()["items"]]
    assert not folder.exists()
    assert "retention: deleted 1 jobs" in live.log("worker-0.log")
