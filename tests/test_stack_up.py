"""`trainyard up` (behind `make run`): the README example trains, the CLI finds the stack on its port without
being told, and SIGTERM leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from trainyard.services import free_port

EXAMPLE = Path(__file__).parents[1] / "examples" / "lenet5-sgd.json"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The `trainyard` command as a user runs it, in `env`."""
    run = [sys.executable, "-m", "trainyard.cli", *args]
    return subprocess.run(run, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_up_trains_the_readme_example_and_stops_cleanly(tmp_path):
    port = free_port()
    # A user's plain environment: no Redis or database named, so the stack brings its own.
    ours = ("TRAINYARD_", "REDIS_URL", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env |= {"TRAINYARD_HOME": str(tmp_path / "var"), "PORT": str(port)}
    # A key kept from an earlier database, which this one does not know: up makes a new one.
    stale = "ty_0123456789abcdef_" + "x" * 43
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "api-key").write_text(stale + "\n")
    up = subprocess.Popen(
        [sys.executable, "-m", "trainyard.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = up.stdout.readline()
        while banner and "trainyard is up" not in banner:
            banner = up.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner

        dashboard = up.stdout.readline()
        key = (tmp_path / "var" / "api-key").read_text().strip()
        assert key != stale
        assert dashboard.strip() == f"dashboard: http://127.0.0.1:{port}/?key={key}"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as http:
            assert http.get("/readyz").json() == {"status": "ready", "database": "ok", "redis": "ok"}
            response = http.post("/v1/jobs", json=json.loads(EXAMPLE.read_text()))
            assert response.status_code == 202
            job_url = response.headers["location"]
            deadline = time.monotonic() + 120
            while (job := http.get(job_url).json())["status"] in ("queued", "running"):
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
        assert job["status"] == "succeeded", job["error"]

        # The client commands, given no URL or key (as after `PORT=8011 make run`), find this stack.
        assert (tmp_path / "var" / "api-url").read_text().strip() == f"http://127.0.0.1:{port}"
        listed = cli(env, "jobs", "--json")
        assert listed.returncode == 0, listed.stderr
        assert job["id"] in [item["id"] for item in json.loads(listed.stdout)["items"]]
        # An explicit URL still wins over the one up left.
        elsewhere = f"http://127.0.0.1:{free_port()}"
        refused = cli(env | {"TRAINYARD_URL": elsewhere}, "jobs")
        assert refused.returncode == 1
        assert f"cannot reach the trainyard API at {elsewhere}" in refused.stderr
        assert (tmp_path / "var" / "trainyard.db").exists()
        # The local tenant's webhook secret, left where its user (and only they) can read it.
        secret_file = tmp_path / "var" / "webhook-secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        with sqlite3.connect(tmp_path / "var" / "trainyard.db") as db:
            signing = db.execute("SELECT secret FROM webhook_secrets WHERE tenant = 'default'").fetchall()
        assert signing == [(secret_file.read_text().strip(),)]
        family = psutil.Process(up.pid).children(recursive=True)
        assert len(family) >= 4  # redis, worker, its training process, api

        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0
        _, alive = psutil.wait_procs(family, timeout=15)
        assert not alive, f"left running: {alive}"
        assert not (tmp_path / "var" / "api-url").exists()  # stopped: nothing serves there any more
    finally:
        if up.poll() is None:
            up.kill()
