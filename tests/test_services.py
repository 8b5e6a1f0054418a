"""trainyard.services starts real Redis servers and leaves none behind."""

import signal
import subprocess
import sys
import time

import redis

from trainyard.services import ensure_redis, free_port, redis_answers, start_private_redis


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
