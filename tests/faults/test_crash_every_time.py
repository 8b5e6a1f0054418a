"""A job that kills its training process on every attempt fails after max_attempts, with the reason."""

from __future__ import annotations

from tests.factories import lenet_spec, training


def test_job_that_kills_its_worker_every_time_fails_after_max_attempts(fault_stack):
    # The fault stack installs the test hook TRAINYARD_TEST_CRASH_JOBS_NAMED=crash-me (tests/faults/
    # crash_hook: that job's training process calls os._exit(1)) and sets TRAINYARD_MAX_ATTEMPTS=2.
    stack = fault_stack
    job = stack.submit(lenet_spec(name="crash-me", training=training(epochs=1)))

    job = stack.wait_finished(job["id"], timeout=60)
    assert job["status"] == "failed"
    assert job["attempts"] == 2
    assert "gave up after 2 attempts" in job["error"]

    # The worker survives its training process's deaths and trains the next job.
    after = stack.wait_finished(stack.submit(lenet_spec(training=training(epochs=1)))["id"], timeout=60)
    assert after["status"] == "succeeded", after["error"]
