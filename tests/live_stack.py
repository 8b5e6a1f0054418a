"""A real trainyard stack for tests: `trainyard api` and `trainyard worker` processes on Redis and SQL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from tests.stack_client import StackClient
from trainyard.services import free_port

# Short leases and frequent flushes so that recovery and cancellation are observable in seconds.
TEST_SETTINGS = {
    "TRAINYARD_HEARTBEAT_S": "0.5",
    "TRAINYARD_LEASE_S": "5",
    "TRAINYARD_REPORT_EVERY": "5",
    "TRAINYARD_DEVICE": "cpu",
    "TRAINYARD_SSE_HEARTBEAT_S": "1",
    "TRAINYARD_WEBHOOK_BACKOFF_S": "0.2",
    "TRAINYARD_WEBHOOK_ALLOW_PRIVATE": "true",  # the tests' receivers listen on 127.0.0.1
    "TRAINYARD_MAX_UPLOAD_BYTES": str(8 * 2**20),  # so a test can pass it cheaply
    "TRAINYARD_RATE_LIMIT_PER_MINUTE": "0",  # tests poll hard; tests/api/test_api_rate_limit.py sets its own
}
CLI = [sys.executable, "-m", "trainyard.cli"]


class LiveStack(StackClient):
    def __init__(
        self, home: Path, database_url: str, redis_url: str, settings: dict[str, str] | None = None
    ) -> None:
        """`settings`: environment for the processes instead of TEST_SETTINGS (e.g. a benchmark's
        production defaults); it may also override OMP_NUM_THREADS, which is 1 unless given."""
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = os.environ | {"OMP_NUM_THREADS": "1"} | (TEST_SETTINGS if settings is None else settings)
        self.env = base | {
            "TRAINYARD_HOME": str(home),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PORT": str(self.port),
        }
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.api_process: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.api_key: str | None = None
        self.webhook_secrets: dict[str, str] = {}  # tenant: the secret printed with its first key

    def _spawn(self, args: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.home / log_name, "ab")
        # Own session: the test can kill a whole process tree (worker and its training child) at once.
        return subprocess.Popen(
            CLI + args, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def new_key(self, tenant: str = "default") -> str:
        """A new API key for `tenant`, made as an operator does: `trainyard keys create`. The tenant's
        webhook secret, printed with its first key, is kept in `webhook_secrets`."""
        command = [*CLI, "keys", "create", "--tenant", tenant]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=True)
        if secret := re.search(r"whsec_\S+", done.stdout):
            self.webhook_secrets[tenant] = secret.group()
        return done.stdout.split()[-1]

    def start_api(self) -> None:
        self.api_process = self._spawn(["api", "--port", str(self.port)], "api.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.api_process.poll() is not None:
                raise RuntimeError(f"the API exited:\n{self.log('api.log')}")
            try:
                if self.http.get("/healthz").status_code == 200:
                    # Every /v1 route wants a key: the stack's own client uses one of tenant "default".
                    self.api_key = self.new_key()
                    self.http.headers["Authorization"] = f"Bearer {self.api_key}"
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the API did not start:\n{self.log('api.log')}")

    def start_worker(
        self, concurrency: int = 1, home: Path | None = None, wait: bool = True, queues: str | None = None
    ) -> subprocess.Popen:
        """A worker; with `home`, a TRAINYARD_HOME of its own (another host's disk). Its log is the
        stack's worker-N.log either way. `wait=False`: started, not waited for (wait_ready). `queues`:
        what it takes (`trainyard worker --queues`); default as the worker chooses."""
        env = self.env | {"TRAINYARD_HOME": str(home)} if home else None
        args = ["worker", "--concurrency", str(concurrency), *(["--queues", queues] if queues else [])]
        worker = self._spawn(args, f"worker-{len(self.workers)}.log", env)
        self.workers.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: subprocess.Popen) -> None:
        log_name = f"worker-{self.workers.index(worker)}.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{self.log(log_name)}")
            if "ready." in self.log(log_name):
                return
            time.sleep(0.2)
        raise TimeoutError("the worker did not become ready")

    def kill_worker(self, worker: subprocess.Popen) -> None:
        """SIGKILL the worker's whole process group: a machine lost mid-job."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)

    def log(self, name: str) -> str:
        path = self.home / name
        return path.read_text(errors="replace") if path.exists() else ""

    def diagnostics(self) -> str:
        return "\n".join(self.log(f"worker-{i}.log")[-3000:] for i in range(len(self.workers)))

    def stop(self) -> None:
        for process in [*self.workers, self.api_process]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.workers, self.api_process]:
            if process is not None:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        self.http.close()
