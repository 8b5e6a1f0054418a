"""Fixtures: a real Redis, real databases (SQLite, PostgreSQL) and real trainyard processes."""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from tests.in_process_api import InProcessApi, stack_settings
from tests.live_stack import LiveStack
from tests.s3_server import CREDENTIALS, S3Server, start_s3_server
from trainyard.services import start_private_redis

# make test runs two pytest processes on two cores: torch's intra-op threads (one per core in each by
# default) would be twice the cores, and small in-process trainings run several times slower fighting
# over them. The real stacks' processes get one thread each already (tests/live_stack.py).
_PYTEST_PROCESSES = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _PYTEST_PROCESSES > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _PYTEST_PROCESSES))



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files with a slow test first: make test's two processes take a file at a time each, in this
    order, and a minute-long file drawn last would leave the other process idle for its minute."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order is kept otherwise


POSTGRES_ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """A private Redis per test session (the bundled server), so no test sees another's keys."""
    server = start_private_redis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3 API server process (moto's), as Redis is one; each test asks it for a bucket of its own.
    This process signs with the test credentials unless some are set already."""
    server = start_s3_server()
    missing = {name: value for name, value in CREDENTIALS.items() if name not in os.environ}
    os.environ.update(missing)
    yield server
    for name in missing:
        os.environ.pop(name, None)
    server.stop()


@contextmanager
def scratch_postgres(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards (even if a test closed it to connections); the test
    is skipped with the reason when no server answers."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.skip(f"no PostgreSQL reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the session's PostgreSQL stack."""
    with scratch_postgres("trainyard_test") as url:
        yield url


def _stack(tmp_path_factory, name: str, database_url: str | None, redis_url: str, workers: int) -> LiveStack:
    home = tmp_path_factory.mktemp(name)
    stack = LiveStack(home, database_url or f"sqlite:///{home / 'trainyard.db'}", redis_url)
    stack.start_api()
    for _ in range(workers):
        stack.start_worker()
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory, redis_server) -> Iterator[LiveStack]:
    """API and one worker on SQLite."""
    live = _stack(tmp_path_factory, "sqlite-stack", None, redis_server, workers=1)
    yield live
    live.stop()


@pytest.fixture(scope="session")
def pg_stack(tmp_path_factory, postgres_url) -> Iterator[LiveStack]:
    """API and one worker on PostgreSQL, with a Redis of its own."""
    server = start_private_redis(tmp_path_factory.mktemp("pg-redis"))
    live = _stack(tmp_path_factory, "pg-stack", postgres_url, server.url, workers=1)
    yield live
    live.stop()
    server.stop()


@pytest.fixture(scope="module")
def start_in_process_api(tmp_path_factory) -> Iterator[Callable[..., InProcessApi]]:
    """Starts apps in this process, each on a SQLite file and a private Redis of its own (so that what it
    queues can be counted); `variables` (TRAINYARD_* as a LiveStack takes them) and settings fields
    override TEST_SETTINGS. All are stopped after the module."""
    started: list[tuple[InProcessApi, Any]] = []

    def start(variables: dict[str, str] | None = None, **fields: Any) -> InProcessApi:
        home = tmp_path_factory.mktemp("in-process-api")
        server = start_private_redis(home / "redis")
        try:
            api = InProcessApi(stack_settings(home, server.url, variables, **fields))
        except BaseException:
            server.stop()
            raise
        started.append((api, server))
        return api

    yield start
    for api, server in started:
        api.stop()
        server.stop()


@pytest.fixture(scope="module")
def in_process_api(start_in_process_api) -> InProcessApi:
    """The API in this process with the tests' settings and no worker: what it enqueues stays queued."""
    return start_in_process_api()


@pytest.fixture(scope="session")
def private_hostname() -> str:
    """This machine's name, which resolves (through /etc/hosts) to a loopback or private address: a name
    that only a lookup shows to lead into the private network. Skipped where it does not."""
    host = socket.gethostname()
    try:
        resolved = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(host, 80)}
    except socket.gaierror:
        pytest.skip(f"{host} does not resolve here")
    if all(address.is_global for address in resolved):
        pytest.skip(f"{host} resolves to public addresses here")
    return host
