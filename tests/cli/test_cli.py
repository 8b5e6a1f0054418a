"""The `trainyard` CLI and TrainyardClient against the live stack, run as a user runs them."""

from __future__ import annotations

import json
import os
import re
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from models.datasets import raw_arrays
from tests.factories import lenet_spec, training
from trainyard.client import TrainyardClient, TrainyardError

CLI = [sys.executable, "-m", "trainyard.cli"]


@pytest.fixture(scope="module", autouse=True)
def api_key(stack):
    """The CLI and the client take the key from TRAINYARD_API_KEY, as a user sets it (module-wide, so
    that the module's fixtures that run the CLI have it too)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRAINYARD_API_KEY", stack.api_key)
        yield stack.api_key


def trainyard(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the CLI in its own process, as a shell would."""
    env = os.environ | {"TRAINYARD_URL": url}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def write_spec(tmp_path: Path, spec: dict, name: str = "spec.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return str(path)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def followed(stack, tmp_path_factory):
    """`trainyard submit --follow` of a tiny job: the finished process and the job it trained."""
    spec = write_spec(tmp_path_factory.mktemp("followed"), lenet_spec(name="cli-followed"))
    done = trainyard(stack.url, "submit", spec, "--follow")
    job_id = done.stdout.splitlines()[0]
    return done, stack.job(job_id)


@pytest.fixture(scope="module")
def streamed(stack, tmp_path_factory):
    """A job submitted with --json and followed with `logs --follow --json`: (job, its curve lines)."""
    spec = lenet_spec(name="cli-streamed", training=training(epochs=2, seed=1))
    submitted = trainyard(
        stack.url, "submit", write_spec(tmp_path_factory.mktemp("streamed"), spec), "--json"
    )
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    logs = trainyard(stack.url, "logs", job["id"], "--follow", "--json")
    assert logs.returncode == 0, logs.stderr
    return stack.job(job["id"]), json_lines(logs.stdout)


def test_submit_follow_shows_progress_and_ends_with_the_final_accuracy(followed):
    done, job = followed
    assert done.returncode == 0, done.stderr
    assert job["status"] == "succeeded"
    assert f"job {job['id']} succeeded" in done.stdout
    assert f"test_acc {job['metrics']['test_acc']:.4f}" in done.stdout
    assert f"run {job['runs'][0]['id']}" in done.stdout
    # The bar goes to stderr, so that stdout keeps the id and the outcome only.
    assert "epoch 2.0/2" in done.stderr and "val_acc" in done.stderr and "succeeded" in done.stderr


def test_a_bad_spec_exits_2_and_names_the_fields(stack, tmp_path):
    spec = lenet_spec(optimizer={"type": "sgd", "lr": -1}, training=training(epochs=0))
    done = trainyard(stack.url, "submit", write_spec(tmp_path, spec))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "422" in done.stderr and "optimizer.sgd.lr" in done.stderr and "training.epochs" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_or_broken_spec_file_exits_2(stack, tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    for path in (tmp_path / "missing.json", tmp_path / "broken.json"):
        done = trainyard(stack.url, "submit", str(path))
        assert done.returncode == 2 and str(path) in done.stderr


def test_jobs_lists_the_job_as_a_table_and_as_json(stack, followed):
    _, job = followed
    table = trainyard(stack.url, "jobs", "--limit", "100")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if job["id"] in line)
    assert "cli-followed" in row and "succeeded" in row and f"{job['metrics']['test_acc']:.4f}" in row
    page = json.loads(
        trainyard(stack.url, "jobs", "--status", "succeeded", "--limit", "100", "--json").stdout
    )
    assert job["id"] in [item["id"] for item in page["items"]]
    assert {item["status"] for item in page["items"]} == {"succeeded"}


def test_logs_prints_one_line_per_point_with_val_acc(stack, followed):
    _, job = followed
    curve = stack.curve(job["id"])
    done = trainyard(stack.url, "logs", job["id"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(curve)
    val_acc = [line for line in lines if " val_acc " in line]
    assert len(val_acc) == 2 and val_acc[-1].endswith(f"{job['metrics']['val_acc']:.6g}")
    as_json = json_lines(trainyard(stack.url, "logs", job["id"], "--json").stdout)
    assert [point["id"] for point in as_json] == [point["id"] for point in curve]


def test_logs_follow_streams_the_curve_until_the_job_ends(streamed):
    job, points = streamed
    assert job["status"] == "succeeded"
    names = {point["name"] for point in points}
    assert {"train_loss", "val_acc"} <= names
    assert [point["epoch"] for point in points if point["name"] == "val_acc"] == [1.0, 2.0]
    ids = [point["id"] for point in points]
    assert len(ids) == len(set(ids))


def test_submit_follow_json_prints_json_lines_only(stack, tmp_path):
    spec = lenet_spec(name="cli-json", training=training(epochs=1))
    done = trainyard(stack.url, "submit", write_spec(tmp_path, spec), "--follow", "--json")
    assert done.returncode == 0, done.stderr
    submitted, *events = json_lines(done.stdout)
    assert submitted["status"] == "queued"
    assert {event["event"] for event in events} == {"status", "metric", "done"}
    assert events[-1]["event"] == "done" and events[-1]["data"]["status"] == "succeeded"


def test_cancel_stops_a_running_job_and_its_follower_exits_1(stack, tmp_path):
    spec = lenet_spec(name="cli-long", training=training(epochs=200, batch_size=8))
    follower = subprocess.Popen(
        [*CLI, "submit", write_spec(tmp_path, spec), "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"TRAINYARD_URL": stack.url},
    )
    job_id = follower.stdout.readline().strip()
    try:
        stack.wait_for(
            job_id, lambda job: job["status"] == "running" and job["progress"]["step"] > 0, timeout=60
        )
        # With the one worker busy, a second job waits in the queue: cancelling it ends it at once.
        queued = json.loads(trainyard(stack.url, "submit", write_spec(tmp_path, spec), "--json").stdout)
        assert trainyard(stack.url, "cancel", queued["id"]).stdout == f"job {queued['id']} cancelled\n"
        cancelled = trainyard(stack.url, "cancel", job_id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"cancel requested: job {job_id}" in cancelled.stdout
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 1
    assert f"job {job_id} cancelled" in out
    assert stack.job(job_id)["status"] == "cancelled"
    # A finished job cannot be cancelled: the conflict is said, and it is not the user's typo (exit 1).
    again = trainyard(stack.url, "cancel", job_id)
    assert again.returncode == 1 and "409" in again.stderr and "cancelled" in again.stderr


def test_unknown_ids_exit_2_with_the_apis_message(stack):
    for args in (["logs", "nope"], ["cancel", "nope"], ["ensemble", "show", "nope"]):
        done = trainyard(stack.url, *args)
        assert done.returncode == 2 and "404" in done.stderr and "nope not found" in done.stderr


def test_ensemble_create_and_predict_on_two_finished_runs(stack, followed, streamed, tmp_path):
    runs = [followed[1]["runs"][0]["id"], streamed[0]["runs"][0]["id"]]
    created = trainyard(stack.url, "ensemble", "create", *runs, "--name", "cli-pair", "--json")
    assert created.returncode == 0, created.stderr
    ensemble = json.loads(created.stdout)
    assert ensemble["status"] == "ready" and ensemble["name"] == "cli-pair"
    shown = trainyard(stack.url, "ensemble", "show", ensemble["id"])
    assert f"ensemble accuracy  {ensemble['evaluation']['ensemble_accuracy']:.4f}" in shown.stdout

    x, y = raw_arrays({"name": "digits"})
    np.save(tmp_path / "inputs.npy", x[:200])  # large enough to travel as .npy
    (tmp_path / "inputs.json").write_text(json.dumps({"inputs": x[:3].tolist()}))
    from_npy = trainyard(
        stack.url, "ensemble", "predict", ensemble["id"], str(tmp_path / "inputs.npy"), "--json"
    )
    assert from_npy.returncode == 0, from_npy.stderr
    prediction = json.loads(from_npy.stdout)
    assert np.asarray(prediction["probs"]).shape == (200, 10)
    assert np.mean(np.asarray(prediction["labels"]) == y[:200]) > 0.5
    table = trainyard(stack.url, "ensemble", "predict", ensemble["id"], str(tmp_path / "inputs.json"))
    rows = [line.split() for line in table.stdout.splitlines()[1:]]
    assert [int(row[1]) for row in rows] == prediction["labels"][:3]


def test_an_ensemble_job_is_followed_member_by_member(stack, tmp_path):
    spec = lenet_spec(name="cli-ensemble", training=training(epochs=1, seed=3))
    spec["ensemble"] = {"members": 2}
    done = trainyard(stack.url, "submit", write_spec(tmp_path, spec), "--follow")
    assert done.returncode == 0, done.stderr
    assert "member 0" in done.stderr and "member 1" in done.stderr
    assert "succeeded" in done.stdout and "ensemble accuracy" in done.stdout


def test_an_unreachable_api_exits_1_naming_the_url():
    with socket.socket() as sock:  # a port that nothing listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    runs = [
        trainyard(url, "jobs"),
        trainyard(url, "logs", "some-job", "--follow"),
        trainyard("http://127.0.0.1:1", "jobs", "--url", url),  # --url wins over TRAINYARD_URL
    ]
    for done in runs:
        assert done.returncode == 1
        assert f"cannot reach the trainyard API at {url}" in done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""


# ---------------------------------------------------------------- the client


class CuttingProxy(socketserver.ThreadingTCPServer):
    """A TCP proxy to the API that keeps what clients send and drops its first `cuts` connections after
    `after` bytes of the answer: a network that breaks a stream mid-way."""

    daemon_threads = True

    def __init__(self, upstream_port: int, cuts: int = 0, after: int = 0) -> None:
        self.upstream_port, self.cuts, self.after = upstream_port, cuts, after
        self.connections, self.sent = 0, bytearray()
        super().__init__(("127.0.0.1", 0), ProxyConnection)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class ProxyConnection(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: CuttingProxy = self.server
        server.connections += 1
        budget = server.after if server.connections <= server.cuts else None
        upstream = socket.create_connection(("127.0.0.1", server.upstream_port))
        threading.Thread(target=self.forward_requests, args=(upstream,), daemon=True).start()
        while chunk := upstream.recv(65536):
            if budget is not None and len(chunk) >= budget:
                self.request.sendall(chunk[:budget])
                break
            budget = None if budget is None else budget - len(chunk)
            self.request.sendall(chunk)
        upstream.close()
        self.request.shutdown(socket.SHUT_RDWR)

    def forward_requests(self, upstream: socket.socket) -> None:
        try:
            while chunk := self.request.recv(65536):
                self.server.sent.extend(chunk)
                upstream.sendall(chunk)
        except OSError:
            pass


def test_events_resume_after_a_broken_stream_with_no_gap_or_duplicate(stack, followed):
    job_id = followed[1]["id"]
    curve_ids = [point["id"] for point in stack.curve(job_id)]
    proxy = CuttingProxy(stack.port, cuts=1, after=3000)
    try:
        with TrainyardClient(proxy.url) as client:
            events = list(client.events(job_id))
    finally:
        proxy.close()
    assert proxy.connections == 2
    assert [event_id for event, event_id, _ in events if event == "metric"] == curve_ids
    assert events[-1][0] == "done" and events[-1][2]["id"] == job_id


def test_events_start_after_last_event_id(stack, followed):
    job_id = followed[1]["id"]
    curve_ids = [point["id"] for point in stack.curve(job_id)]
    with TrainyardClient(stack.url) as client:
        events = list(client.events(job_id, last_event_id=curve_ids[9]))
    assert [event_id for event, event_id, _ in events if event == "metric"] == curve_ids[10:]


def test_client_errors_carry_the_status_and_the_field_paths(stack):
    with TrainyardClient(stack.url) as client:
        with pytest.raises(TrainyardError) as unknown:
            client.job("nope")
        with pytest.raises(TrainyardError) as invalid:
            client.submit(lenet_spec(training=training(batch_size=-1)))
    assert unknown.value.status_code == 404 and "nope not found" in str(unknown.value)
    assert invalid.value.status_code == 422
    assert (
        "training.batch_size",
        "Input should be greater than or equal to 1",
    ) in invalid.value.field_errors()


def test_client_sends_the_api_key_when_one_is_set(stack, monkeypatch):
    proxy = CuttingProxy(stack.port)
    monkeypatch.setenv("TRAINYARD_URL", proxy.url + "/")
    monkeypatch.setenv("TRAINYARD_API_KEY", "k-123")
    try:
        with TrainyardClient() as client, pytest.raises(TrainyardError) as refused:
            client.jobs(limit=1)
    finally:
        proxy.close()
    assert b"\r\nAuthorization: Bearer k-123\r\n" in proxy.sent
    assert refused.value.status_code == 401  # not a key the server knows


def test_a_submit_whose_answer_is_lost_is_sent_again_and_queued_once(stack):
    proxy = CuttingProxy(stack.port, cuts=1, after=0)  # the first answer never arrives
    name = f"lost-answer-{time.monotonic_ns()}"
    try:
        with TrainyardClient(proxy.url) as client:
            job = client.submit(lenet_spec(name=name, training=training(epochs=1)))
    finally:
        proxy.close()
    assert proxy.connections == 2
    keys = re.findall(rb"\r\nIdempotency-Key: ([^\r]+)\r\n", bytes(proxy.sent), flags=re.IGNORECASE)
    assert len(keys) == 2 and keys[0] == keys[1]
    named = [
        j["id"]
        for j in stack.http.get("/v1/jobs", params={"limit": 100}).json()["items"]
        if j["name"] == name
    ]
    assert named == [job["id"]]


def test_dataset_upload_prints_the_id_a_job_trains_on_and_list_shows_it(stack, tmp_path):
    x, y = raw_arrays({"name": "digits"})
    archive = tmp_path / "my-digits.npz"
    np.savez_compressed(archive, x=x[:300], y=y[:300])
    uploaded = trainyard(stack.url, "dataset", "upload", str(archive))
    assert uploaded.returncode == 0, uploaded.stderr
    assert "my-digits: 300 samples of 1×8×8, 10 classes" in uploaded.stdout
    dataset_id = uploaded.stdout.split()[-1]

    listed = json_lines(trainyard(stack.url, "dataset", "list", "--json").stdout)[0]
    assert dataset_id in [d["id"] for d in listed]
    spec = lenet_spec(dataset={"name": "upload", "id": dataset_id}, training=training(epochs=1))
    job = stack.wait_finished(stack.submit(spec)["id"])
    assert job["status"] == "succeeded", job["error"]

    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    refused = trainyard(stack.url, "dataset", "upload", str(broken))
    assert refused.returncode == 2
    assert "not a .npz (zip) archive" in refused.stderr and "Traceback" not in refused.stderr


def test_sweep_create_wait_show_and_cancel(stack, tmp_path):
    body = {
        "name": "cli-sweep",
        "base": lenet_spec(training=training(epochs=1)),
        "space": {"optimizer.lr": {"choice": [0.1, 0.05]}},
        "method": "grid",
    }
    created = trainyard(stack.url, "sweep", "create", write_spec(tmp_path, body), "--wait")
    assert created.returncode == 0, created.stderr
    sweep_id = created.stdout.split()[1]
    assert "succeeded" in created.stdout.splitlines()[0] and "best: trial" in created.stdout
    shown = trainyard(stack.url, "sweep", "show", sweep_id, "--json")
    assert json_lines(shown.stdout)[0]["status"] == "succeeded"
    assert {t["status"] for t in json_lines(shown.stdout)[0]["trials"]} == {"succeeded"}

    long = body | {"name": "cli-cancelled", "base": lenet_spec(training=training(epochs=200))}
    running = TrainyardClient(stack.url).create_sweep(long)  # long enough to be cancelled, not finished
    cancelled = trainyard(stack.url, "sweep", "cancel", running["id"])
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled" in cancelled.stdout.splitlines()[0]
    again = trainyard(stack.url, "sweep", "cancel", running["id"])
    assert again.returncode == 1 and "409" in again.stderr
