"""The embedded default stack behind `trainyard up`: private Redis, migrations, one worker, the API."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from trainyard.services import RedisNotFound, RedisServer, start_private_redis
from worker.processes import die_with_parent

STOP_GRACE_S = 10.0
WEBHOOK_SECRET_FILE = "webhook-secret"  # tenant "default"'s signing secret as first made; rotating changes it


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived: leave the supervision loop and stop everything."""


def _raise_stop(signum, frame) -> None:
    raise StopRequested(signal.Signals(signum).name)


def spawn(*args: str) -> subprocess.Popen:
    """Start `python -m trainyard.cli ARGS` in its own process group; Linux kills it if we die."""
    # Own session: Ctrl-C reaches only us, so children stop in order, and a group holds all a child forked.
    cmd = [sys.executable, "-m", "trainyard.cli", *args]
    return subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent)  # noqa: PLW1509


def _kill_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def stop_children(children: list[subprocess.Popen]) -> None:
    """SIGTERM each child, wait up to STOP_GRACE_S, then SIGKILL its whole process group."""
    # TERM goes to the leader only: Celery's pool processes die at once on TERM, while the main process
    # shuts down warm; the KILL to the group then sweeps whatever a child left behind.
    for process in children:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    for process in children:
        _kill_group(process, signal.SIGKILL)
        process.wait()


def port_open(port: int) -> bool:
    """True once something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text + "\n")


def local_key(home: Path) -> str:
    """The embedded stack's API key (tenant "default"): made at first start, kept in home/api-key; made
    again when the kept one no longer opens this database (a new DATABASE_URL, a deleted or revoked key).
    The tenant's webhook signing secret, made with its first key, is kept beside it in home/webhook-secret.
    """
    from store import keys
    from store.db import session_scope

    path = home / "api-key"
    with session_scope() as session:
        kept = path.read_text().strip() if path.is_file() else None
        if kept and keys.tenant_of(session, kept) == "default":
            return kept
        new = keys.issue_key(session, "default", name="local key of trainyard up")
    _write_private(path, new.key)
    if new.webhook_secret:
        _write_private(home / WEBHOOK_SECRET_FILE, new.webhook_secret)
    return new.key


def leave_url(home: Path, url: str) -> Path:
    """Write the URL we serve beside the key, home/api-url, where the `trainyard` client commands look."""
    path = home / "api-url"
    path.write_text(url + "\n")
    return path


def take_back_url(path: Path, url: str) -> None:
    """Remove home/api-url at stop, unless another `trainyard up` has written its own since."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text().strip() == url:
            path.unlink()


def supervise(children: dict[str, subprocess.Popen], port: int, key: str) -> int:
    """Announce the stack once the API listens; return 1 as soon as any child exits."""
    announced = False
    while True:
        for name, process in children.items():
            if process.poll() is not None:
                print(f"trainyard: the {name} exited ({process.returncode}); stopping", file=sys.stderr)
                return 1
        if not announced and port_open(port):
            print(f"trainyard is up: http://127.0.0.1:{port}  (Ctrl-C stops it)")
            # As notebook servers do: the dashboard's address carries the key.
            print(f"dashboard: http://127.0.0.1:{port}/?key={key}", flush=True)
            announced = True
        time.sleep(0.2)


def run_stack() -> int:
    """Run the stack until Ctrl-C/SIGTERM (exit 0) or until a part of it fails (exit 1)."""
    from store.migrate import upgrade
    from store.settings import get_settings

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    redis: RedisServer | None = None
    children: dict[str, subprocess.Popen] = {}
    url = f"http://127.0.0.1:{settings.port}"
    url_file: Path | None = None
    handlers = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not ({"REDIS_URL", "TRAINYARD_REDIS_URL"} & os.environ.keys()):
            redis = start_private_redis(settings.home / "redis")
            os.environ["REDIS_URL"] = redis.url  # inherited by the children
            get_settings.cache_clear()
        upgrade()
        key = local_key(settings.home)
        url_file = leave_url(settings.home, url)
        if redis is not None:
            from worker.recovery import requeue_queued_jobs

            # A fresh private Redis holds no messages: jobs left queued by the last run need new ones.
            requeue_queued_jobs()
        # As `trainyard worker` chooses: jobs_per_gpu training processes per GPU, else one.
        children["worker"] = spawn("worker")
        children["api"] = spawn("api", "--host", "127.0.0.1", "--port", str(settings.port), "--no-migrate")
        return supervise(children, settings.port, key)
    except StopRequested as stop:
        print(f"trainyard: {stop}, stopping", file=sys.stderr)
        return 0
    except RedisNotFound as missing:
        print(f"trainyard: {missing}", file=sys.stderr)
        return 1
    finally:
        for sig in handlers:  # a second Ctrl-C must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        stop_children(list(children.values()))
        if redis is not None:
            redis.stop()
        if url_file is not None:
            take_back_url(url_file, url)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
