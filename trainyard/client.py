"""A Python client of the trainyard HTTP API (httpx); it speaks HTTP only and never imports the server."""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from httpx_sse import SSEError, connect_sse

from store.states import EnsembleStatus, SweepStatus

DEFAULT_URL = "http://127.0.0.1:8000"
# Arrays up to this many numbers go as JSON (readable in logs); larger ones as .npy, 4 bytes a number.
JSON_PREDICT_LIMIT = 4096
# The server pings every 15 s: a stream silent for longer than this has broken.
STREAM_READ_TIMEOUT_S = 45.0
# A POST that creates work is sent this many times at most when its answer is lost on the way.
CREATE_ATTEMPTS = 3


class TrainyardError(Exception):
    """An error answer of the API: its status code and its `detail` (a message or FastAPI's field list)."""

    def __init__(self, status_code: int | None, detail: Any, url: str = "") -> None:
        self.status_code = status_code
        self.detail = detail
        self.url = url
        super().__init__(self.message())

    def field_errors(self) -> list[tuple[str, str]]:
        """(field path, message) pairs of a 422; the leading "body" is left out, as a spec file has none."""
        if not isinstance(self.detail, list):
            return []
        pairs = []
        for error in self.detail:
            loc = [str(part) for part in error.get("loc", [])]
            if loc[:1] == ["body"]:
                loc = loc[1:]
            pairs.append((".".join(loc) or "body", error.get("msg", str(error))))
        return pairs

    def message(self) -> str:
        if self.field_errors():
            return "invalid request: " + "; ".join(f"{path}: {msg}" for path, msg in self.field_errors())
        return str(self.detail)


class TrainyardConnectionError(TrainyardError):
    """The API did not answer at all (nothing listening, DNS, timeout)."""

    def __init__(self, url: str, cause: Exception) -> None:
        self.cause = cause
        super().__init__(
            None, f"cannot reach the trainyard API at {url} ({type(cause).__name__}: {cause})", url
        )


def local_home() -> Path:
    """Where `trainyard up` on this machine keeps its key and URL (TRAINYARD_HOME, as the server reads it)."""
    return Path(os.environ.get("TRAINYARD_HOME", "var"))


def local_url() -> str | None:
    """The URL `trainyard up` serves, as it leaves it in TRAINYARD_HOME/api-url (so PORT=8011 is found)."""
    path = local_home() / "api-url"
    return (path.read_text().strip() or None) if path.is_file() else None


def local_key(url: str) -> str | None:
    """The key `trainyard up` keeps in TRAINYARD_HOME/api-key, for a server on this machine only."""
    if httpx.URL(url).host not in ("127.0.0.1", "localhost", "::1"):
        return None
    path = local_home() / "api-key"
    return path.read_text().strip() if path.is_file() else None


def resolve_url(url: str | None = None) -> str:
    """`url`, else TRAINYARD_URL, else where the local `trainyard up` serves, else DEFAULT_URL."""
    return (url or os.environ.get("TRAINYARD_URL") or local_url() or DEFAULT_URL).rstrip("/")


class TrainyardClient:
    """`TrainyardClient()` talks to `resolve_url()` with TRAINYARD_API_KEY (else the local stack's key)."""

    def __init__(self, url: str | None = None, timeout: float = 30.0, api_key: str | None = None) -> None:
        self.url = resolve_url(url)
        key = api_key if api_key is not None else os.environ.get("TRAINYARD_API_KEY") or local_key(self.url)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def __enter__(self) -> TrainyardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # ---- jobs

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a JobSpec; the queued job. Safe to retry with the same `idempotency_key`."""
        return self._create("/v1/jobs", spec, idempotency_key)

    def jobs(
        self,
        status: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """One page of jobs, newest first: {"items": [...], "next_cursor": ...}; `tags`: all of them."""
        return self._page("/v1/jobs", limit, cursor, status=status, tag=tags)

    def runs(self, limit: int = 20, cursor: str | None = None, **filters: Any) -> dict[str, Any]:
        """One page of runs: {"items": [...], "next_cursor": ...}; filters `job_id`, `tag` (a list: all of
        them), `dataset`, `dataset_id`, `arch`, and `sort` ("created_at", newest first, or "test_acc")."""
        return self._page("/v1/runs", limit, cursor, **filters)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask for queued or running work to stop; the job as it is now."""
        return self._request("POST", f"/v1/jobs/{job_id}/cancel")

    def delete_job(self, job_id: str) -> None:
        """Delete a finished job, its runs, curve, checkpoints and files (an ensemble job: its members)."""
        self._send("DELETE", f"/v1/jobs/{job_id}")

    def metrics(self, job_id: str, after: str | None = None) -> dict[str, Any]:
        """The curve: {"points": [...], "last_id": ...}; `after` a point id for what came since."""
        return self._request("GET", f"/v1/jobs/{job_id}/metrics", params={"after": after} if after else None)

    def events(
        self, job_id: str, last_event_id: str | None = None, retries: int = 5
    ) -> Iterator[tuple[str, str | None, Any]]:
        """The job's Server-Sent Events as (event, id, data) until `done`; resumes after a broken stream."""
        failures, heard = 0, False
        while True:
            try:
                for event, event_id, data in self._one_stream(job_id, last_event_id):
                    failures, heard = 0, True
                    if event_id:
                        last_event_id = event_id
                    yield event, event_id, data
                    if event == "done":
                        return
                cause: Exception = httpx.RemoteProtocolError("the stream ended before the job did")
            except (httpx.TransportError, SSEError) as exc:
                # Read errors mid-stream, or a proxy that answered with something other than the stream.
                cause = exc
            failures += 1
            if failures > retries or (not heard and isinstance(cause, httpx.ConnectError)):
                # Nothing listening on the first try is a wrong URL or a stopped server: say so at once.
                raise TrainyardConnectionError(self.url, cause)
            # Back off 0.5, 1, 2, 4 s... then resume after the last event seen: no gaps, no duplicates.
            time.sleep(0.5 * 2 ** (failures - 1))

    def _one_stream(self, job_id: str, last_event_id: str | None) -> Iterator[tuple[str, str | None, Any]]:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        timeout = httpx.Timeout(self.http.timeout.connect, read=STREAM_READ_TIMEOUT_S)
        with connect_sse(
            self.http, "GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=timeout
        ) as source:
            if source.response.is_error:
                source.response.read()
                self._raise_for(source.response)
            for sse in source.iter_sse():
                yield sse.event, sse.id or None, json.loads(sse.data) if sse.data else None

    # ---- ensembles

    def create_ensemble(
        self,
        members: list[str | dict[str, Any]],
        method: str = "mean_probs",
        name: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """An ensemble of stored runs; it is `building` until a worker has evaluated it."""
        body: dict[str, Any] = {"members": members, "method": method} | ({"name": name} if name else {})
        return self._create("/v1/ensembles", body, idempotency_key)

    def ensembles(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of ensembles, newest first: {"items": [...], "next_cursor": ...}."""
        return self._page("/v1/ensembles", limit, cursor)

    def ensemble(self, ensemble_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/ensembles/{ensemble_id}")

    def wait_ensemble(self, ensemble_id: str, timeout: float = 600, poll: float = 0.5) -> dict[str, Any]:
        """The ensemble once it is no longer `building` (ready or failed)."""
        deadline = time.monotonic() + timeout
        while (ensemble := self.ensemble(ensemble_id))["status"] == EnsembleStatus.BUILDING:
            if time.monotonic() > deadline:
                raise TimeoutError(f"ensemble {ensemble_id} is still building after {timeout:.0f} s")
            time.sleep(poll)
        return ensemble

    # ---- sweeps

    def create_sweep(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """A sweep (`base`, `space`, `method`, ...): its first trials are queued at once."""
        return self._create("/v1/sweeps", body, idempotency_key)

    def sweeps(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of sweeps, newest first: {"items": [...], "next_cursor": ...}."""
        return self._page("/v1/sweeps", limit, cursor)

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        """The sweep with its trials, best trial and parameter importances."""
        return self._request("GET", f"/v1/sweeps/{sweep_id}")

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        """Cancel the sweep and its queued and running trials; the sweep as it is now."""
        return self._request("POST", f"/v1/sweeps/{sweep_id}/cancel")

    def wait_sweep(self, sweep_id: str, timeout: float = 3600, poll: float = 1.0) -> dict[str, Any]:
        """The sweep once it has ended (succeeded, failed or cancelled)."""
        deadline = time.monotonic() + timeout
        while (sweep := self.sweep(sweep_id))["status"] == SweepStatus.RUNNING:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} is still running after {timeout:.0f} s")
            time.sleep(poll)
        return sweep

    def ensemble_from_sweep(
        self, sweep_id: str, select: str = "greedy", size: int = 5, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """An ensemble of a sweep's succeeded trials: the `size` best (top_k) or Caruana's greedy selection
        on the validation split (greedy; a trial may be chosen more than once)."""
        body = {"from_sweep": sweep_id, "select": select, "size": size}
        return self._create("/v1/ensembles", body, idempotency_key)

    def predict(
        self, ensemble_id: str, inputs: Any, npy: bool | None = None, tta: str | None = None
    ) -> dict[str, Any]:
        """{"probs": N×K, "labels": N} for N×C×H×W inputs; large arrays travel as .npy (`npy` forces it);
        `tta="flip"` averages each image's probabilities with its mirror's."""
        params = {"tta": tta} if tta else None
        return self._predict(f"/v1/ensembles/{ensemble_id}/predict", inputs, npy, params)

    def delete_ensemble(self, ensemble_id: str) -> None:
        """Delete an ensemble (not its member runs) and its averaged weights."""
        self._send("DELETE", f"/v1/ensembles/{ensemble_id}")

    # ---- runs

    def predict_run(
        self,
        run_id: str,
        inputs: Any,
        npy: bool | None = None,
        averaged: bool = False,
        tta: str | None = None,
    ) -> dict[str, Any]:
        """As `predict`, with one run's network; `averaged`: its Polyak or EMA weights."""
        params = ({"averaged": "true"} if averaged else {}) | ({"tta": tta} if tta else {})
        return self._predict(f"/v1/runs/{run_id}/predict", inputs, npy, params)

    def export_onnx(self, run_id: str, averaged: bool = False) -> bytes:
        """The run's network as ONNX: N×C×H×W at the trained size and pixel scale in, probabilities out."""
        params = {"format": "onnx"} | ({"averaged": "true"} if averaged else {})
        return self._send("GET", f"/v1/runs/{run_id}/export", params=params).content

    # ---- webhooks

    def rotate_webhook_secret(self, grace_s: float | None = None) -> dict[str, Any]:
        """A new signing secret, shown only in this answer; the old one signs `grace_s` more seconds (default:
        the server's webhook_secret_grace_s)."""
        params = {"grace_s": grace_s} if grace_s is not None else None
        return self._request("POST", "/v1/webhooks/secret/rotate", params=params)

    # ---- datasets

    def upload_dataset(self, npz: bytes, name: str) -> dict[str, Any]:
        """Upload an .npz (x: N×C×H×W or N×H×W, y: labels); the stored dataset, whose id a spec names."""
        headers = {"Content-Type": "application/x-npz"}
        return self._request("POST", "/v1/datasets", params={"name": name}, content=npz, headers=headers)

    def datasets(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of this tenant's uploads, newest first: {"items": [...], "next_cursor": ...}."""
        return self._page("/v1/datasets", limit, cursor)

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete an upload and its file; refused (409) while a queued or running job trains on it."""
        self._send("DELETE", f"/v1/datasets/{dataset_id}")

    # ---- plumbing

    def _page(self, path: str, limit: int, cursor: str | None, **filters: Any) -> dict[str, Any]:
        """One page of a list route; filters left as None are not sent."""
        params = {"limit": limit, "cursor": cursor} | filters
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def _create(self, path: str, body: dict[str, Any], idempotency_key: str | None) -> Any:
        """POSTs work under an Idempotency-Key, sending it again when the answer is lost on the way: the
        server answers a repeat as it answered the first, so nothing is queued twice. A refused connection
        is not retried: nothing reached the server, and a stopped server should be reported at once."""
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                response = self.http.post(path, json=body, headers=headers)
                break
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.ConnectError) or attempt == CREATE_ATTEMPTS:
                    raise TrainyardConnectionError(self.url, exc) from exc
                time.sleep(0.2 * attempt)
        self._raise_for(response)
        return response.json()

    def _predict(
        self, path: str, inputs: Any, npy: bool | None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        array = np.asarray(inputs, dtype=np.float32)
        if npy is False or (npy is None and array.size <= JSON_PREDICT_LIMIT):
            return self._request("POST", path, json={"inputs": array.tolist()}, params=params)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        headers = {"Content-Type": "application/x-npy"}
        return self._request("POST", path, content=buffer.getvalue(), headers=headers, params=params)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TrainyardConnectionError(self.url, exc) from exc
        self._raise_for(response)
        return response

    def _raise_for(self, response: httpx.Response) -> None:
        if not response.is_error:
            return
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):  # not JSON, or JSON that is not an object (a proxy's page)
            detail = response.text.strip() or response.reason_phrase
        raise TrainyardError(response.status_code, detail, str(response.url))
