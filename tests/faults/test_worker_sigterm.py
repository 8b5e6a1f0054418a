"""A worker told to stop (SIGTERM: docker stop, a rolling deploy) gives its running job back at once."""

from __future__ import annotations

import os
import signal

import pytest

from tests.factories import lenet_spec, training

# `docker stop` and Kubernetes signal the worker's main process only; systemd signals the whole group,
# the pool's training processes included.
SENDERS = {"main process": os.kill, "process group": os.killpg}


@pytest.mark.parametrize("to", SENDERS)
def test_sigterm_hands_the_job_back_and_the_next_worker_resumes(fault_stack, to):
    stack = fault_stack
    job = stack.submit(lenet_spec(training=training(epochs=5, batch_size=32)))
    stack.wait_for(job["id"], lambda j: "val_acc" in j["metrics"] and j["status"] == "running", poll=0.02)

    worker = stack.workers[-1]
    SENDERS[to](worker.pid, signal.SIGTERM)
    worker.wait(20)  # a warm shutdown that ends without waiting for the job to finish
    handed_back = stack.job(job["id"])
    assert handed_back["status"] == "queued"
    assert handed_back["attempts"] == 1
    assert stack.queued_messages() >= 1  # back in the broker, not waiting for a lease to run out

    stack.start_worker()
    job = stack.wait_finished(job["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2

    curve = stack.curve(job["id"])
    steps_per_epoch = job["progress"]["steps"] // 5
    resumed = [p for p in curve if p["attempt"] == 2]
    assert resumed and min(p["step"] for p in resumed) > steps_per_epoch  # from a checkpoint, not from 0
    steps = [p["step"] for p in curve if p["name"] == "train_loss"]
    assert steps == sorted(set(steps))  # one curve that continues, no step twice


def test_a_handed_back_attempt_does_not_count_toward_max_attempts(fault_stack):
    # The fault stack allows 2 attempts. A deploy (SIGTERM) and then a lost worker (SIGKILL) would use
    # both if hand-backs counted, and the job would fail; a hand-back is not the job's fault.
    stack = fault_stack
    job = stack.submit(lenet_spec(training=training(epochs=5, batch_size=32)))

    def past_an_epoch(attempt: int):
        return lambda j: j["attempts"] == attempt and j["status"] == "running" and j["progress"]["epoch"] >= 1

    stack.wait_for(job["id"], past_an_epoch(1), poll=0.02)
    os.kill(stack.workers[-1].pid, signal.SIGTERM)
    stack.workers[-1].wait(20)
    stack.start_worker()
    stack.wait_for(job["id"], past_an_epoch(2), poll=0.02)
    stack.kill_worker(stack.workers[-1])
    stack.start_worker()

    job = stack.wait_finished(job["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 3
