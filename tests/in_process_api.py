"""The API in the test's own process: create_app(settings) served by uvicorn on a thread.

Real HTTP on a real socket (event streams, bodies cut off mid-read, concurrent clients all behave as in
production), a migrated SQLite file and a real Redis, but no process to start and no imports to repeat.
With no worker, what the app enqueues stays in its Redis, where a test can count it.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import uvicorn

from api.app import create_app
from store import keys
from store.migrate import upgrade
from store.settings import Settings
from tests.live_stack import TEST_SETTINGS
from tests.stack_client import StackClient


def stack_settings(
    home: Path, redis_url: str, variables: dict[str, str] | None = None, **fields: Any
) -> Settings:
    """Settings as a LiveStack's processes read them from TRAINYARD_* `variables` (default TEST_SETTINGS),
    on a SQLite file under `home`; `fields` override."""
    named = {
        name.removeprefix("TRAINYARD_").lower(): value for name, value in (variables or TEST_SETTINGS).items()
    }
    return Settings(**named | {"home": home, "redis_url": redis_url, "database_url": None} | fields)


class InProcessApi(StackClient):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        upgrade(settings.sqlalchemy_url)
        self.app = create_app(settings)
        self.redis = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        listening = socket.create_server(("127.0.0.1", 0))  # bound before the thread starts: no port race
        self.port = listening.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listening]}, name=f"api-{self.port}", daemon=True
        )
        self._thread.start()
        self._listening = listening
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process API did not start")
            time.sleep(0.01)
        self.api_key = self.new_key()
        self.http = httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.api_key}"}
        )

    @property
    def database_path(self) -> Path:
        return Path(self.settings.sqlalchemy_url.removeprefix("sqlite:///"))

    def new_key(self, tenant: str = "default") -> str:
        """A new API key for `tenant`, stored in the app's database by store/keys.py."""
        with self.app.state.resources.sessions() as session, session.begin():
            return keys.create_key(session, tenant)

    def client(self, key: str | None = None) -> httpx.Client:
        """Another client of the app: with `key`, or anonymous."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def stop(self) -> None:
        self.http.close()
        self._server.should_exit = True  # uvicorn finishes what is in flight, then runs the app's shutdown
        self._thread.join(15)
        self._listening.close()
        self.redis.close()
