"""A real HTTP(S) server that records every POST: what the tests' webhooks are delivered to."""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """Records every POST; each path answers its scripted codes in turn, then 200. With `tls`, it serves
    HTTPS with that context, and `server_names` records the TLS server name (SNI) each client asked for."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: dict[str, list[Received]] = {}
        self.scripts: dict[str, list[int]] = {}
        self.server_names: list[str | None] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.changed:
                    script = receiver.scripts.get(self.path, [])
                    code = script.pop(0) if script else 200
                    received = Received(dict(self.headers), body, code)
                    receiver.requests.setdefault(self.path, []).append(received)
                    receiver.changed.notify_all()
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: the kernel picks a free one
        self.port = self.server.server_address[1]
        self.scheme = "http"
        if tls is not None:
            tls.sni_callback = lambda _socket, name, _context: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def path(self, *answers: int) -> str:
        """A fresh path on this server that answers `answers` first, then 200."""
        path = f"/hooks/{uuid.uuid4().hex}"
        self.scripts[path] = list(answers)
        return path

    def url(self, *answers: int, host: str = "127.0.0.1") -> str:
        """A fresh URL on this server (under `host`, a name for it) that answers `answers` first, then 200."""
        return f"{self.scheme}://{host}:{self.port}{self.path(*answers)}"

    def received(self, url: str) -> list[Received]:
        path = "/" + url.split("/", 3)[3]
        with self.changed:
            return list(self.requests.get(path, []))

    def wait(self, url: str, count: int, timeout: float = 30) -> list[Received]:
        path = "/" + url.split("/", 3)[3]
        with self.changed:
            self.changed.wait_for(lambda: len(self.requests.get(path, [])) >= count, timeout)
            got = list(self.requests.get(path, []))
        assert len(got) >= count, f"{url} received {len(got)} requests, not {count}"
        return got

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
