"""A sweep lives in SQL, and so does a job waiting for a training slot: both survive their worker SIGKILLed
mid-trial and their API restarted."""

from __future__ import annotations

from tests.e2e.test_sweeps import wait_sweep
from tests.factories import lenet_spec, training


def test_a_sweep_and_a_waiting_job_survive_a_killed_worker_and_a_restarted_api(fault_stack):
    stack = fault_stack
    body = {
        "base": lenet_spec(training=training(epochs=3)),
        "space": {"optimizer.lr": {"choice": [0.1, 0.05]}},
        "method": "grid",
        "parallelism": 1,
    }
    response = stack.http.post("/v1/sweeps", json=body)
    assert response.status_code == 201, response.text
    sweep_id = response.json()["id"]
    [first] = response.json()["trials"]
    past_an_epoch = lambda job: "val_acc" in job["metrics"] and job["status"] == "running"  # noqa: E731
    stack.wait_for(first["job_id"], past_an_epoch, poll=0.02)
    # The stack's one training slot is the trial's: this job waits in SQL, the broker never heard of it.
    waiting = stack.submit(lenet_spec(training=training(epochs=1)))
    assert stack.job(waiting["id"])["dispatched_at"] is None

    stack.kill_worker(stack.workers[-1])
    stack.api_process.terminate()
    stack.api_process.wait(20)
    stack.start_api()
    stack.start_worker()

    waiting = stack.wait_finished(waiting["id"])
    assert waiting["status"] == "succeeded", waiting["error"]
    sweep = wait_sweep(stack, sweep_id)
    assert sweep["status"] == "succeeded", sweep
    assert [trial["status"] for trial in sweep["trials"]] == ["succeeded"] * 2
    assert stack.job(first["job_id"])["attempts"] == 2  # the killed attempt, then the one that resumed
    assert sorted(t["params"]["optimizer.lr"] for t in sweep["trials"]) == [0.05, 0.1]
