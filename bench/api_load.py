"""The API under a dashboard's load: polls and event streams while a job trains.

    python bench/api_load.py [--quick] [--pollers 64] [--followers 100] [--worker-threads N]

A real stack (API, private Redis, SQLite, one Celery worker) on this machine, on the Settings defaults.
The same job (lenet5 on digits, momentum, seed 0) trains three times:

1. alone: its training time (the job's finished_at - started_at) is the baseline;
2. under load: `--pollers` clients poll GET /v1/jobs/{id} as fast as they are answered (each waits for its
   answer, then asks again, on a kept-alive connection), and `--followers` clients follow
   GET /v1/jobs/{id}/events from its start to its `done`;
3. alone again, so that drift of the machine's speed hits both sides; the baseline is the mean of 1 and 3.

Printed: polls per second and their p50/p99 latency over the job's training, whether every follower got
every curve point of the job (each once, in order), and the training slowdown under load.
Last line `value=<polls per second>` (goal at least 1,500 with p99 under 50 ms on 2 cores, and no slowdown
of the training beyond 10%).

The worker trains with `--worker-threads` threads (default: all cores but one). On a machine that also
serves the API, that core is the API's: training OpenMP threads all wait for one that was preempted, so a
2-thread run loses 15-35% to even a light poller (measured in bench/service_overhead.py). Both the baseline
and the loaded run use the same setting.

The clients are hand-written asyncio HTTP/1.1 (a request line, Content-Length or chunked bodies) rather than
httpx: the load generator shares the machine with what it measures, so it must cost far less per request
than the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# One key makes every request here: the per-key rate limit (api/rate_limit.py) would refuse the load.
UNLIMITED_RATE = {"TRAINYARD_RATE_LIMIT_PER_MINUTE": "0"}
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

for name in ("HEARTBEAT_S", "LEASE_S", "REPORT_EVERY", "STREAM_MAXLEN", "SSE_HEARTBEAT_S"):
    os.environ.pop(f"TRAINYARD_{name}", None)  # the stack runs on the Settings defaults


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter job (about a minute in all)")
    parser.add_argument("--pollers", type=int, default=64)
    parser.add_argument("--followers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1600, help="polls per second in the paced run")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--worker-threads", type=int, default=max(1, (os.cpu_count() or 1) - 1))
    return parser.parse_args()


def job_spec(epochs: int) -> dict:
    return {
        "name": "bench-api-load",
        "dataset": {"name": "digits"},
        "model": {"arch": "lenet5"},
        "optimizer": {"type": "momentum", "lr": 0.05, "momentum": 0.9},
        "training": {"epochs": epochs, "batch_size": 64, "seed": 0},
    }


# ------------------------------------------------------------------ a minimal HTTP/1.1 client

AUTH = ""  # the Authorization header line, once the stack has given the benchmark a key


async def read_response_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        if line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return status, headers


async def poll(
    port: int, path: str, stop: asyncio.Event, latencies: list[float], interval: float | None = None
) -> int:
    """GET `path` again and again on one connection until `stop`, as soon as answered or every `interval`
    seconds; answers the number of non-200s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{AUTH}\r\n".encode()
    errors = 0
    due = time.perf_counter() + random.random() * (interval or 0)  # clients out of step, as real ones are
    try:
        while not stop.is_set():
            if interval:
                due += interval
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            started = time.perf_counter()
            writer.write(request)
            status, headers = await read_response_head(reader)
            await reader.readexactly(int(headers["content-length"]))
            latencies.append(time.perf_counter() - started)
            errors += status != 200
    finally:
        writer.close()
    return errors


async def follow(port: int, path: str) -> list[tuple[str, str | None]]:
    """Read an event stream to its end: (event, id) of each event (comments skipped)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n{AUTH}\r\n".encode())
    status, headers = await read_response_head(reader)
    assert status == 200 and headers.get("transfer-encoding") == "chunked", (status, headers)
    events, buffer = [], b""
    try:
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                return events
            buffer += (await reader.readexactly(size + 2))[:-2]
            *blocks, buffer = buffer.split(b"\n\n")
            for block in blocks:
                fields = dict(line.split(": ", 1) for line in block.decode().split("\n") if ": " in line)
                if "event" in fields:
                    events.append((fields["event"], fields.get("id")))
    finally:
        writer.close()


# ------------------------------------------------------------------ the runs


def _moment(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def training_seconds(job: dict) -> float:
    return _moment(job["finished_at"]) - _moment(job["started_at"])


def run_alone(stack, spec: dict) -> float:
    job = stack.wait_finished(stack.submit(spec)["id"], timeout=3600)
    assert job["status"] == "succeeded", job["error"]
    return training_seconds(job)


async def run_loaded(stack, spec: dict, pollers: int, followers: int, rate: float | None = None) -> dict:
    job_id = stack.submit(spec)["id"]
    stop = asyncio.Event()
    latencies: list[float] = []
    events, one_job = f"/v1/jobs/{job_id}/events", f"/v1/jobs/{job_id}"
    following = [asyncio.create_task(follow(stack.port, events)) for _ in range(followers)]
    interval = pollers / rate if rate else None
    polling = [
        asyncio.create_task(poll(stack.port, one_job, stop, latencies, interval)) for _ in range(pollers)
    ]
    while stack.job(job_id)["status"] != "running":
        await asyncio.sleep(0.05)
    counted_from, counted = time.perf_counter(), len(latencies)
    followed = await asyncio.gather(*following)  # they end with the job's `done`
    window = time.perf_counter() - counted_from
    polls_in_window = latencies[counted:]
    stop.set()
    errors = sum(await asyncio.gather(*polling))
    job = stack.job(job_id)
    assert job["status"] == "succeeded", job["error"]
    return {
        "job": job,
        "polls": polls_in_window,
        "window": window,
        "errors": errors,
        "followed": followed,
        "curve_ids": [p["id"] for p in stack.curve(job_id)],
    }


def summarize(name: str, loaded: dict, baseline: float, followers: int) -> dict:
    polls = sorted(loaded["polls"])
    rate = len(polls) / loaded["window"]
    p50, p99 = (polls[int(q * (len(polls) - 1))] * 1000 for q in (0.50, 0.99))
    curve = loaded["curve_ids"]
    complete = 0
    for events in loaded["followed"]:
        metric_ids = [event_id for kind, event_id in events if kind == "metric"]
        complete += metric_ids == curve and events[-1][0] == "done"
    slowdown = training_seconds(loaded["job"]) / baseline
    print(
        f"{name}: {rate:.0f} polls/s ({len(polls)} in {loaded['window']:.1f} s), p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms, non-200 {loaded['errors']}; followers with every one of the {len(curve)} "
        f"points once, in order, then done: {complete}/{followers}; training slowdown {slowdown:.3f}"
    )
    return {"polls_per_s": round(rate), "p99_ms": round(p99, 1), "slowdown": round(slowdown, 3)}


def main() -> None:
    args = parse_args()
    from tests.live_stack import LiveStack
    from trainyard.services import start_private_redis

    epochs = args.epochs or (15 if args.quick else 60)
    tmp = Path(tempfile.mkdtemp(prefix="trainyard-bench-"))
    redis_server = start_private_redis(tmp / "redis")
    settings = {"TRAINYARD_DEVICE": "cpu", **UNLIMITED_RATE, "OMP_NUM_THREADS": str(args.worker_threads)}
    stack = LiveStack(tmp, f"sqlite:///{tmp / 'trainyard.db'}", redis_server.url, settings=settings)
    spec = job_spec(epochs)
    try:
        stack.start_api()
        stack.start_worker(concurrency=1)
        global AUTH
        AUTH = f"Authorization: Bearer {stack.api_key}\r\n"
        print(
            f"stack: 1 API process, 1 worker training with {args.worker_threads} thread(s), "
            f"{os.cpu_count()} cores; job: lenet5 on digits, {epochs} epochs, batch 64"
        )
        run_alone(stack, job_spec(1))  # warm-up: imports, dataset cache, first kernels
        alone = [run_alone(stack, spec)]
        saturated = asyncio.run(run_loaded(stack, spec, args.pollers, args.followers))
        paced = asyncio.run(run_loaded(stack, spec, args.pollers, args.followers, rate=args.rate))
        alone.append(run_alone(stack, spec))
    except BaseException:
        print(f"API log, last lines:\n{stack.log('api.log')[-3000:]}", file=sys.stderr)
        raise
    finally:
        stack.stop()
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    baseline = statistics.mean(alone)
    print(f"training alone: {alone[0]:.2f} s before, {alone[1]:.2f} s after the loaded runs")
    most = summarize(f"{args.pollers} pollers as fast as answered", saturated, baseline, args.followers)
    goal = summarize(f"{args.pollers} pollers at {args.rate:.0f}/s in all", paced, baseline, args.followers)
    print(json.dumps({"saturated": most, "paced": goal}))
    print(f"p99_ms={most['p99_ms']}")
    print(f"value={most['polls_per_s']}")


if __name__ == "__main__":
    main()
