"""What tests do with a trainyard API over HTTP, whether it runs in a process of its own or in theirs."""

from __future__ import annotations

import time
from typing import Any

import httpx
import redis

from store.queue import QUEUE
from store.states import TERMINAL


class StackClient:
    """`http` carries the key of tenant "default"; `redis` is the stack's own Redis."""

    http: httpx.Client
    redis: redis.Redis

    def diagnostics(self) -> str:
        """What helps to understand a test that timed out (the workers' logs)."""
        return ""

    def queued_messages(self, queue: str = QUEUE) -> int:
        return self.redis.llen(queue)

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/v1/jobs", json=spec)
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(self, job_id: str, predicate, timeout: float = 120, poll: float = 0.1) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if predicate(job):
                return job
            time.sleep(poll)
        raise TimeoutError(f"job {job_id} never got there; last seen {job}\n{self.diagnostics()}")

    def wait_finished(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        return self.wait_for(job_id, lambda j: j["status"] in TERMINAL, timeout)

    def curve(self, job_id: str) -> list[dict[str, Any]]:
        return self.http.get(f"/v1/jobs/{job_id}/metrics").json()["points"]
