"""A job that needs a GPU waits for a worker that takes the GPU queue; a CPU-only worker leaves it queued.

This machine has no GPU, so the worker that takes trainyard.gpu is told to (`--queues`), as a worker with
a GPU does by default, and trains on its CPU. That still proves the routing, which is all the queues
decide: which worker a job's task reaches; the device a worker trains on is its own (worker/engine.py).
"""

from __future__ import annotations

import os
import signal

from store.queue import GPU_QUEUE, QUEUE
from tests.factories import lenet_spec, training

GPU = {"resources": {"gpu": True}}
ONE_EPOCH = training(epochs=1)


def test_gpu_jobs_and_their_members_train_only_on_a_worker_that_takes_the_gpu_queue(stack):
    # The session's stack has one worker, CPU-only: it takes trainyard alone.
    gpu_job = stack.submit(lenet_spec(name="needs-gpu", training=ONE_EPOCH, **GPU))
    members = {"members": 2, "strategy": "fanout"}  # a task per member: each is routed on its own
    ensemble = stack.submit(lenet_spec(name="gpu-ensemble", training=ONE_EPOCH, ensemble=members, **GPU))
    cpu_job = stack.wait_finished(stack.submit(lenet_spec(name="anywhere", training=ONE_EPOCH))["id"])
    assert cpu_job["status"] == "succeeded", cpu_job["error"]
    assert stack.job(gpu_job["id"])["status"] == "queued"
    assert stack.job(ensemble["id"])["status"] == "queued"
    assert stack.queued_messages(GPU_QUEUE) == 2  # left there by the CPU-only worker, which was free

    gpu_worker = stack.start_worker(queues=GPU_QUEUE)  # the GPU queue alone: the finish needs none
    log = f"worker-{len(stack.workers) - 1}.log"
    try:
        for job_id in (gpu_job["id"], ensemble["id"]):
            job = stack.wait_finished(job_id)
            assert job["status"] == "succeeded", job["error"]
        member_ids = [member["id"] for member in stack.job(ensemble["id"])["members"]]
        assert len(member_ids) == 2
        # Each member was trained by the GPU worker, none by the CPU-only one (the chord sent them to
        # the GPU queue); the ensemble's finish, which needs no GPU, ran on the CPU worker.
        for job_id in (gpu_job["id"], *member_ids):
            assert f"job {job_id}: succeeded" in stack.log(log)
            assert f"job {job_id}: succeeded" not in stack.log("worker-0.log")
        assert stack.queued_messages(GPU_QUEUE) == 0 and stack.queued_messages(QUEUE) == 0
    finally:
        os.killpg(gpu_worker.pid, signal.SIGTERM)
        gpu_worker.wait(20)
        stack.workers.remove(gpu_worker)
