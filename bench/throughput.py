"""Throughput: jobs per minute through the real service with 1 and 2 training processes, and per GPU packing.

    python bench/throughput.py [--quick] [--jobs 24] [--epochs E] [--rounds R] [--threads T]

A real stack (API, private Redis, SQLite, one Celery worker) on the Settings defaults, training `--jobs`
short jobs (24; lenet5 on digits, momentum SGD, batch 64, E epochs: 4, or 2 with --quick; seeds 0..23),
all submitted at once, on each worker configuration in turn:

1. 1 and 2 training processes (`trainyard worker --concurrency N`). On the CPU the cores are shared, as
   `trainyard worker` shares them: each process gets cores / N torch threads, so both sides use them all
   (`--threads T`: T threads each instead, to see what the processes alone change).
2. On a machine with CUDA GPUs: 1, 2 and 4 jobs per GPU (`TRAINYARD_JOBS_PER_GPU`: GPUs x k training
   processes, process i on GPU i mod GPUs), the measurement behind that setting's default. Without a GPU
   this part prints why it was skipped.

Each configuration gets a fresh worker, warmed by a 1-epoch job per training process (imports, the
dataset's first load, the first kernels), and is timed from the first POST of its jobs to the last
job's finished_at; jobs per minute = jobs / that time. With more than one round the configurations
alternate (1, 2, 1, 2, ...) so that drift of the machine's speed hits all; each one's median and best
round are printed. Each round's line carries the machine's load average: on a machine shared with other
work, one process of several threads loses most (its OpenMP threads wait at every op for one that was
preempted), and the best round is the nearest to a quiet machine.

Last lines `best_ratio=<best rounds' jobs per minute, 2 processes / 1>` and
`ratio=<median jobs per minute with 2 processes / with 1>`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The stack runs on the Settings defaults, not on what the caller's shell may set.
for name in ("HEARTBEAT_S", "LEASE_S", "REPORT_EVERY", "MAX_JOB_SECONDS", "MAX_ATTEMPTS", "JOBS_PER_GPU"):
    os.environ.pop(f"TRAINYARD_{name}", None)

import torch  # noqa: E402

from store.states import TERMINAL  # noqa: E402
from tests.live_stack import LiveStack  # noqa: E402
from trainyard.services import start_private_redis  # noqa: E402

# One key submits every job at once: neither the rate limit nor the active-jobs quota may hold them back.
BENCH_SETTINGS = {"TRAINYARD_RATE_LIMIT_PER_MINUTE": "0", "TRAINYARD_MAX_ACTIVE_JOBS": "1000"}
# How often the end is looked for, with one list request for the whole batch: a poller per job would take
# a core's share from the training it measures. The time itself comes from the jobs' own finished_at.
POLL_S = 1.0
JOBS_PER_GPU = (1, 2, 4)
BATCHES = itertools.count()  # each batch's jobs carry a tag of their own, to be listed together


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2-epoch jobs, one round (about a minute)")
    parser.add_argument("--jobs", type=int, default=24, choices=range(1, 101), metavar="1..100")
    parser.add_argument("--epochs", type=int, default=None, help="each job's epochs; default 4, quick 2")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every configuration; default 2")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per process; default cores / N"
    )
    return parser.parse_args()


def job_spec(epochs: int, seed: int) -> dict:
    return {
        "name": f"bench-throughput-{seed}",
        "dataset": {"name": "digits"},
        "model": {"arch": "lenet5"},
        "optimizer": {"type": "momentum", "lr": 0.05, "momentum": 0.9},
        "training": {"epochs": epochs, "batch_size": 64, "seed": seed},
    }


def _moment(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def run_batch(stack: LiveStack, specs: list[dict]) -> float:
    """Seconds from the first POST to the last job's finished_at; every job must succeed."""
    tag = f"batch-{next(BATCHES)}"
    started = time.time()
    for spec in specs:
        stack.submit(spec | {"tags": [tag]})
    while True:
        time.sleep(POLL_S)
        page = stack.http.get("/v1/jobs", params={"tag": tag, "limit": len(specs)}).json()["items"]
        ended = [job for job in page if job["status"] in TERMINAL]
        if failed := [job for job in ended if job["status"] != "succeeded"]:
            raise RuntimeError(
                f"benchmark job {failed[0]['id']} ended {failed[0]['status']}: {failed[0]['error']}"
            )
        if len(ended) == len(specs):
            return max(_moment(job["finished_at"]) for job in ended) - started
        if time.time() - started > 1800:
            raise TimeoutError(f"{len(specs) - len(ended)} benchmark jobs still unfinished after 30 min")


def with_worker(stack: LiveStack, processes: int, env: dict[str, str], specs: list[dict]) -> float:
    """Start a worker of `processes` training processes with `env`, warm it, time `specs`, stop it."""
    stack.env.update(env)
    worker = stack.start_worker(concurrency=processes)
    try:
        run_batch(stack, [job_spec(1, 1000 + i) for i in range(processes)])  # warm-up
        return run_batch(stack, specs)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        stack.workers.remove(worker)


def measure(
    stack: LiveStack, configs: dict[str, tuple[int, dict]], specs: list[dict], rounds: int
) -> dict[str, list[float]]:
    """Each configuration's (name: (processes, environment)) seconds for `specs`, round by round."""
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, (processes, env) in configs.items():
            took = with_worker(stack, processes, env, specs)
            seconds[name].append(took)
            # The machine's load says whether something else shared it (a 2-thread process suffers most).
            load, rate = os.getloadavg()[0], 60 * len(specs) / took
            print(
                f"{name}: {len(specs)} jobs in {took:.1f} s = {rate:.1f} jobs/min (load {load:.1f})",
                flush=True,
            )
    return seconds


def main() -> None:
    args = parse_args()
    epochs = args.epochs or (2 if args.quick else 4)
    rounds = args.rounds or (1 if args.quick else 2)
    specs = [job_spec(epochs, seed) for seed in range(args.jobs)]
    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count()
    print(
        f"jobs: {args.jobs} x lenet5 on digits, {epochs} epochs, batch 64; {cores} cores, "
        f"{gpus} CUDA GPU(s){' (' + torch.cuda.get_device_name(0) + ')' if gpus else ''}, "
        f"torch {torch.__version__}; {rounds} round(s); torch threads per process: "
        f"{args.threads or 'cores / processes'}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="trainyard-bench-"))
    redis_server = start_private_redis(tmp / "redis")
    stack = LiveStack(tmp, f"sqlite:///{tmp / 'trainyard.db'}", redis_server.url, settings=BENCH_SETTINGS)
    try:
        stack.start_api()
        processes = {
            f"{n} training process{'es' if n > 1 else ''}": (
                n,
                {"OMP_NUM_THREADS": str(args.threads or max(1, cores // n))},
            )
            for n in (1, 2)
        }
        per_process = measure(stack, processes, specs, rounds)
        per_gpu = {}
        if gpus:
            packings = {
                f"{k} job(s) per GPU x {gpus} GPU(s)": (
                    gpus * k,
                    {"TRAINYARD_JOBS_PER_GPU": str(k), "OMP_NUM_THREADS": str(max(1, cores // (gpus * k)))},
                )
                for k in JOBS_PER_GPU
            }
            per_gpu = measure(stack, packings, specs, rounds)
    except BaseException:
        print(f"worker logs, last lines:\n{stack.diagnostics()}", file=sys.stderr)
        raise
    finally:
        stack.stop()
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def rate(seconds: float) -> float:
        return 60 * len(specs) / seconds

    for name, times in (per_process | per_gpu).items():
        print(f"{name}: median {rate(statistics.median(times)):.1f}, best {rate(min(times)):.1f} jobs/min")
    if not gpus:
        print("jobs per GPU: skipped (no CUDA GPU here: torch.cuda.device_count() is 0)")
    one, two = per_process.values()
    print(f"best_ratio={min(one) / min(two):.3f}")
    print(f"ratio={statistics.median(one) / statistics.median(two):.3f}")


if __name__ == "__main__":
    main()
