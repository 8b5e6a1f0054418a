"""Redis restarted while a job trains: the worker reconnects, the job finishes, the gap is reported."""

from __future__ import annotations

from tests.factories import lenet_spec, training


def test_redis_restart_mid_job_leaves_a_reported_gap_not_a_crash(fault_stack, restart_redis):
    stack = fault_stack
    # Long enough (several seconds) to go on training after Redis is back.
    job = stack.submit(lenet_spec(training=training(epochs=30, batch_size=16)))
    waiting = stack.submit(lenet_spec(training=training(epochs=1)))  # queued behind it, in Redis only
    stack.wait_for(job["id"], lambda j: j["status"] == "running" and j["progress"].get("step", 0) > 0)

    # A restart of a Redis that keeps nothing on disk: the stream, the queue, all of it is gone.
    restart_redis(down_s=2)

    job = stack.wait_finished(job["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 1
    assert job["metrics"]["dropped_points"] > 0  # the gap, counted, rather than a crash
    curve = [p for p in stack.curve(job["id"]) if p["name"] == "train_loss"]
    assert curve and curve[0]["step"] > 0  # what came after the restart; what came before went with Redis

    # The queued job's message went with the old Redis: the worker sends it again, and trains it.
    waiting = stack.wait_finished(waiting["id"], timeout=60)
    assert waiting["status"] == "succeeded", waiting["error"]
