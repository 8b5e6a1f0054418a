"""scripts/ensure-services.sh starts the Redis and PostgreSQL that the suite needs, when they are down."""

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from trainyard.services import free_port, redis_answers

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "ensure-services.sh"


def ensure_services(redis_port: int, pg_port: int) -> str:
    env = {**os.environ, "REDIS_PORT": str(redis_port), "PGPORT": str(pg_port)}
    run = ["bash", str(SCRIPT)]
    done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def pg_answers(port: int) -> bool:
    probe = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]
    return subprocess.run(probe, check=False).returncode == 0


def test_scripts_are_executable_bash():
    for script in (SCRIPT, ROOT / ".ci" / "run"):
        assert os.access(script, os.X_OK), script
        subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no system redis-server to start")
@pytest.mark.skipif(shutil.which("pg_isready") is None, reason="PostgreSQL client tools not installed")
def test_starts_redis_when_nothing_answers():
    if not pg_answers(5432):
        pytest.skip("needs a PostgreSQL answering on 5432, so that only Redis is started")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        assert f"started redis-server on 127.0.0.1:{port}" in ensure_services(port, 5432)
        assert redis_answers(url)
        assert f"redis: answering on 127.0.0.1:{port}" in ensure_services(port, 5432)  # idempotent
    finally:
        if redis_answers(url):
            redis.Redis.from_url(url).shutdown(nosave=True)
    assert not redis_answers(url)


def postgres_version() -> str:
    return max(os.listdir("/etc/postgresql"), key=lambda v: [int(p) for p in v.split(".") if p.isdigit()])


@pytest.mark.skipif(shutil.which("pg_createcluster") is None, reason="pg_createcluster not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="creating a throwaway PostgreSQL cluster needs root")
def test_starts_a_stopped_postgres_cluster():
    if not redis_answers("redis://127.0.0.1:6379/0"):
        pytest.skip("needs a Redis answering on 6379, so that only PostgreSQL is started")
    version, name, port = postgres_version(), f"ty{secrets.token_hex(4)}", free_port()
    try:
        create = ["pg_createcluster", version, name, "--port", str(port)]
        subprocess.run(create, check=True, capture_output=True)
        assert not pg_answers(port)
        assert f"started cluster {version}/{name} on 127.0.0.1:{port}" in ensure_services(6379, port)
        assert pg_answers(port)
    finally:
        subprocess.run(["pg_dropcluster", "--stop", version, name], capture_output=True, check=False)
    assert not pg_answers(port)
