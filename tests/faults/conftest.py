"""Fixtures for fault tests: a stack of their own, whose Redis, database and workers a test may break."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import scratch_postgres
from tests.live_stack import TEST_SETTINGS, LiveStack
from trainyard.services import RedisServer, start_private_redis

# A folder whose sitecustomize.py makes a job named as TRAINYARD_TEST_CRASH_JOBS_NAMED kill its training
# process as it starts training, on every attempt (the hook's doc says how).
CRASH_HOOK = Path(__file__).parent / "crash_hook"
# The crash hook and a short attempt budget only touch jobs named "crash-me": the other fault tests share
# this stack, which saves starting an API and a worker for each of them.
FAULT_SETTINGS = TEST_SETTINGS | {
    "TRAINYARD_TEST_CRASH_JOBS_NAMED": "crash-me",
    "TRAINYARD_MAX_ATTEMPTS": "2",
    # Ahead of the tests' own PYTHONPATH (the work tree, when it is set), which it keeps.
    "PYTHONPATH": os.pathsep.join(filter(None, [str(CRASH_HOOK), os.environ.get("PYTHONPATH")])),
}


@pytest.fixture(scope="session")
def fault_redis(tmp_path_factory) -> Iterator[RedisServer]:
    """A Redis server the fault tests alone use, so that they can restart it."""
    server = start_private_redis(tmp_path_factory.mktemp("fault-redis"))
    yield server
    server.stop()


@pytest.fixture
def restart_redis(fault_redis: RedisServer) -> Callable[[float], None]:
    """Stops the fault stack's Redis, waits `down_s`, starts an empty one on the same port."""

    def restart(down_s: float) -> None:
        directory = Path(fault_redis.process.args[fault_redis.process.args.index("--dir") + 1])
        fault_redis.stop()
        time.sleep(down_s)
        fault_redis.process = start_private_redis(directory, port=fault_redis.port).process

    return restart


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory, fault_redis: RedisServer) -> Iterator[LiveStack]:
    """API and one worker on SQLite and on the fault Redis; a test that stops its worker starts another."""
    home = tmp_path_factory.mktemp("fault-stack")
    live = LiveStack(home, f"sqlite:///{home / 'trainyard.db'}", fault_redis.url, FAULT_SETTINGS)
    live.start_api()
    live.start_worker()
    yield live
    live.stop()


@pytest.fixture
def api_on(tmp_path: Path, fault_redis: RedisServer) -> Iterator[Callable[[str], LiveStack]]:
    """Starts an API (no worker) on the given database, for a test that breaks that database."""
    stacks: list[LiveStack] = []

    def start(database_url: str) -> LiveStack:
        live = LiveStack(tmp_path, database_url, fault_redis.url)
        stacks.append(live)
        live.start_api()
        return live

    yield start
    for live in stacks:
        live.stop()


@pytest.fixture
def private_postgres() -> Iterator[str]:
    """A PostgreSQL database of this test's own, which it may make unreachable; skipped without a server."""
    with scratch_postgres("trainyard_fault") as url:
        yield url
