"""Training an ensemble's members: trainyard's chosen strategy against one after another in one process.

    python bench/ensemble_train.py [--quick] [--members K] [--workers N] [--device cpu|cuda] [--batch-size B]

K lenet5 members (default 8) on digits, member k with seed k, momentum SGD, the same epochs and batch size
on both sides:

- baseline: the members one after another in this process, each by worker.training.train() exactly as a
  job trains one model (data as device tensors, etc.), with all of the machine's threads.
- trainyard: the ensemble job's strategy as worker.vectorized.choose_strategy picks it for this device and
  batch size.
  - fanout (on the CPU at batch sizes above 8): a real stack (API, private Redis, SQLite, one Celery worker
    with N training processes, each with cores/N threads) trains the job submitted over HTTP; timed from the
    POST to the moment the last member has finished (read from the members' rows), so queueing, the chord,
    checkpoints and curve streaming are all counted. The ensemble's own evaluation after that is shown
    apart.
  - vmap (small batches on the CPU; small networks on CUDA): worker.vectorized.train_members in this
    process, all K members in one vectorized loop.

One warm-up of each side first (imports, kernels, dataset cache, the stack's first job), then the sides
alternate for several rounds; medians are compared. Last line `ratio=<baseline time / trainyard time>`
(goal at least 1.5 on a 2-core CPU with two worker processes, and at least 2.5 on a GPU).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and rounds (about a minute)")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="training processes (fanout)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    return parser.parse_args()


ARGS = parse_args()
THREADS = os.cpu_count() or 1
os.environ["OMP_NUM_THREADS"] = str(THREADS)  # this process's side: every core for the one-by-one loop
for name in ("HEARTBEAT_S", "LEASE_S", "REPORT_EVERY"):  # the stack runs on the Settings defaults
    os.environ.pop(f"TRAINYARD_{name}", None)

import torch  # noqa: E402

from models.datasets import load_splits  # noqa: E402
from models.spec import JobSpec  # noqa: E402
from worker.vectorized import choose_strategy, train_members, train_sequential  # noqa: E402

FULL_EPOCHS, QUICK_EPOCHS = 6, 2
FULL_ROUNDS, QUICK_ROUNDS = 3, 1
DEVICE = torch.device(ARGS.device)


def spec_dict(epochs: int) -> dict:
    return {
        "name": "bench-ensemble-train",
        "dataset": {"name": "digits"},
        "model": {"arch": "lenet5"},
        "optimizer": {"type": "momentum", "lr": 0.05, "momentum": 0.9},
        "training": {"epochs": epochs, "batch_size": ARGS.batch_size, "seed": 0},
        "ensemble": {"members": ARGS.members},
    }


class Quiet:
    """A reporter that keeps nothing: both sides train without the service's bookkeeping in-process."""

    def report(self, points, progress):
        return None

    def epoch_end(self, state, metrics, progress):
        return None


def run_baseline(spec: JobSpec, splits) -> tuple[float, list[float]]:
    started = time.perf_counter()
    results = train_sequential(spec, splits, [Quiet() for _ in range(ARGS.members)], device=DEVICE)
    return time.perf_counter() - started, [r.metrics["test_acc"] for r in results]


def run_vmap(spec: JobSpec, splits) -> tuple[float, list[float]]:
    started = time.perf_counter()
    results = train_members(spec, splits, [Quiet() for _ in range(ARGS.members)], device=DEVICE)
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, [r.metrics["test_acc"] for r in results]


def _moment(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_fanout(stack, spec: dict) -> tuple[float, list[float], float]:
    """Seconds from the POST to the last member's end, the members' accuracies, and the ensemble's build."""
    posted = time.time()
    job = stack.submit(spec)
    job = stack.wait_finished(job["id"], timeout=1800)
    assert job["status"] == "succeeded", job["error"]
    assert job["strategy"] == "fanout", job["strategy"]
    members_done = max(_moment(stack.job(m["id"])["finished_at"]) for m in job["members"])
    ensemble_done = _moment(job["finished_at"])
    return members_done - posted, [run["test_acc"] for run in job["runs"]], ensemble_done - members_done


def main() -> None:
    torch.set_num_threads(THREADS)
    epochs = ARGS.epochs or (QUICK_EPOCHS if ARGS.quick else FULL_EPOCHS)
    rounds = ARGS.rounds or (QUICK_ROUNDS if ARGS.quick else FULL_ROUNDS)
    spec = JobSpec.model_validate(spec_dict(epochs))
    strategy = choose_strategy(spec, DEVICE)
    splits = load_splits(spec.dataset, spec.model)
    device_name = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else f"cpu ({THREADS} cores)"
    print(
        f"job: {ARGS.members} lenet5 members on digits, momentum, epochs {epochs}, batch {ARGS.batch_size}, "
        f"device {device_name}, torch {torch.__version__}, {rounds} rounds; chosen strategy: {strategy}"
    )

    stack = redis_server = tmp = None
    try:
        if strategy == "fanout":
            from tests.live_stack import LiveStack
            from trainyard.services import start_private_redis

            tmp = Path(tempfile.mkdtemp(prefix="trainyard-bench-"))
            redis_server = start_private_redis(tmp / "redis")
            threads = max(1, THREADS // ARGS.workers)
            settings = {"TRAINYARD_DEVICE": ARGS.device, "OMP_NUM_THREADS": str(threads)}
            stack = LiveStack(tmp, f"sqlite:///{tmp / 'trainyard.db'}", redis_server.url, settings=settings)
            stack.start_api()
            stack.start_worker(concurrency=ARGS.workers)
            print(f"stack: 1 worker, {ARGS.workers} training processes with {threads} thread(s) each")
            build_times: list[float] = []

            def trainyard():
                seconds, accuracy, build_s = run_fanout(stack, spec_dict(epochs))
                build_times.append(build_s)
                return seconds, accuracy

            warm = run_fanout(stack, spec_dict(1) | {"ensemble": {"members": ARGS.workers}})
            print(f"warm-up through the service: {warm[0]:.2f} s")
        else:

            def trainyard():
                return run_vmap(spec, splits)

            run_vmap(JobSpec.model_validate(spec_dict(1)), splits)
        run_baseline(JobSpec.model_validate(spec_dict(1) | {"ensemble": {"members": 1}}), splits)

        times: dict[str, list[float]] = {"one by one": [], strategy: []}
        accuracies: dict[str, list[float]] = {}
        for _ in range(rounds):
            for name, side in (("one by one", lambda: run_baseline(spec, splits)), (strategy, trainyard)):
                seconds, accuracies[name] = side()
                times[name].append(seconds)
                mean = sum(accuracies[name]) / len(accuracies[name])
                print(f"{name:12s} {seconds:7.2f} s  mean member test_acc {mean:.4f}")
        if stack is not None:
            build_s = statistics.median(build_times)
            print(f"(after the last member, building and evaluating the ensemble took {build_s:.2f} s more)")
    finally:
        if stack is not None:
            stack.stop()
        if redis_server is not None:
            redis_server.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    median = {name: statistics.median(t) for name, t in times.items()}
    print("medians: " + ", ".join(f"{name} {m:.2f} s" for name, m in median.items()))
    print(f"member accuracies: one by one {accuracies['one by one']}, {strategy} {accuracies[strategy]}")
    print(f"ratio={median['one by one'] / median[strategy]:.3f}")


if __name__ == "__main__":
    main()
