"""Scheduling with real processes: two training slots shared fairly between tenants, priority within one."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from store import dispatch, keys
from store.db import make_engine
from store.queue import QUEUE
from tests.factories import lenet_spec, training
from tests.live_stack import LiveStack

SHORT = lenet_spec(training=training(epochs=1))
LONG = lenet_spec(training=training(epochs=200))  # until it is cancelled


@pytest.fixture(scope="module")
def two_slots(stack: LiveStack) -> Iterator[LiveStack]:
    """The session's stack with a second worker of one training process, for as long as this module runs."""
    log_name = "scheduling-worker.log"
    worker = stack._spawn(["worker", "--concurrency", "1"], log_name)
    try:
        # Registered, and no slot of a worker another test killed still counting (it lapses with its lease).
        deadline = time.monotonic() + 60
        while dispatch.training_slots(stack.redis).get(QUEUE) != 2 or "ready." not in stack.log(log_name):
            assert worker.poll() is None and time.monotonic() < deadline, stack.log(log_name)[-3000:]
            time.sleep(0.1)
        yield stack
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)


def tenant_client(stack: LiveStack, tenant: str) -> httpx.Client:
    engine = make_engine(stack.env["DATABASE_URL"], pool_size=1)
    with Session(engine) as session, session.begin():
        key = keys.create_key(session, tenant)
    engine.dispose()
    return httpx.Client(base_url=stack.url, timeout=30, headers={"Authorization": f"Bearer {key}"})


def submit(client: httpx.Client, spec: dict[str, Any]) -> str:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_for(client: httpx.Client, job_id: str, predicate: Callable[[dict], bool], timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not predicate(job := client.get(f"/v1/jobs/{job_id}").json()):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def cancel_all(client: httpx.Client, job_ids: list[str]) -> None:
    """Leave the slots free for the tests after: every job cancelled, or ended already, and done."""
    for job_id in job_ids:
        client.post(f"/v1/jobs/{job_id}/cancel")
    for job_id in job_ids:
        wait_for(client, job_id, lambda job: job["finished_at"] is not None)


def test_another_tenants_first_job_starts_before_the_third_of_one_with_ten(two_slots):
    a, b = tenant_client(two_slots, "sched-a"), tenant_client(two_slots, "sched-b")
    a_jobs = [submit(a, SHORT) for _ in range(10)]
    b_job = submit(b, SHORT)
    try:
        b_started = wait_for(b, b_job, lambda job: job["started_at"] is not None)["started_at"]
        a_started = [a.get(f"/v1/jobs/{job_id}").json()["started_at"] for job_id in a_jobs]
        before_b = [started for started in a_started if started is not None and started < b_started]
        assert len(before_b) <= 2, (b_started, a_started)
    finally:
        cancel_all(a, a_jobs)
        cancel_all(b, [b_job])


def test_a_later_higher_priority_job_starts_before_earlier_ones(two_slots):
    client = tenant_client(two_slots, "sched-c")
    fillers = [submit(client, LONG) for _ in range(2)]  # both slots
    earlier = [submit(client, SHORT) for _ in range(2)]
    urgent = submit(client, lenet_spec(training=training(epochs=200, priority=10)))  # running when checked
    try:
        assert client.post(f"/v1/jobs/{fillers[0]}/cancel").status_code == 202
        wait_for(client, urgent, lambda job: job["started_at"] is not None)
        for job_id in earlier:  # still waiting in SQL: one slot freed, and it went to the urgent job
            job = client.get(f"/v1/jobs/{job_id}").json()
            assert (job["status"], job["dispatched_at"]) == ("queued", None)
    finally:
        cancel_all(client, [*fillers, *earlier, urgent])
