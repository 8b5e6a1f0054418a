"""Sweeps: what pruning saves, and what a sweep's ensemble is worth, through the real service.

    python bench/sweep.py [--quick] [--trials N] [--epochs E] [--train-fraction F]
                           [--pruner asha|median|hyperband]

A real stack (API, private Redis, SQLite, two Celery workers of one torch thread each, so that two trials
train at once on a 2-core machine) on the Settings defaults.

1. Search: N trials (16) of LeNet-5 on Fashion-MNIST (a `train_fraction` share of the training split, the
   whole 9,000-image validation split, half the test set), E epochs each (6), momentum SGD, lr log-uniform
   in [0.003, 0.3] and momentum uniform in [0.5, 0.99], method random, seed 0 (--seed), parallelism 2:
   once without early stopping, once with the pruner. Random with a seed draws the same N points both
   times (each trial's point depends on the seed and its number only), so the two searches differ only
   by the pruning.
   Printed: the trial-epochs each spent (the sum of every trial's epochs: the compute) and the best
   validation accuracy each found. Goal: the pruned best within 0.5 points of the unpruned one, with at
   most 40% of its trial-epochs.
2. Ensembles, on the test split: from the unpruned search, a 5-member greedy ensemble (Caruana et al.
   2004, selected on the validation split) and the 5 best trials (top_k); the best single trial (chosen on
   validation); and a 5-seed ensemble of the best trial's configuration (seeds 1-5: 5 more runs of E
   epochs, the compute of the sweep ensemble's 5 members, on top of the search that found it).

Last lines `pruned_best_gap=<points>` (goal <= 0.5) and `trial_epoch_ratio=<pruned / unpruned>` (goal <= 0.4).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The stack runs on the Settings defaults, not on what the caller's shell may set.
for name in ("HEARTBEAT_S", "LEASE_S", "REPORT_EVERY", "MAX_JOB_SECONDS", "MAX_ATTEMPTS", "MAX_ACTIVE_JOBS"):
    os.environ.pop(f"TRAINYARD_{name}", None)

from tests.live_stack import LiveStack  # noqa: E402
from trainyard.services import start_private_redis  # noqa: E402

PRUNERS = {
    # Successive halving at epochs 1 and 4: a quarter of the trials goes on at each rung (Optuna's own
    # factor; with the service's default 3, one of the two seeds measured spent 42% of the epochs).
    "asha": {"type": "asha", "min_resource": 1, "reduction_factor": 4},
    "median": {"type": "median", "n_startup_trials": 4, "n_warmup_steps": 1},
    "hyperband": {"type": "hyperband", "min_resource": 1, "reduction_factor": 3},
}
ENSEMBLE_SIZE = 5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 trials of 3 epochs on 5% (a few minutes)")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-fraction", type=float, default=None)
    parser.add_argument("--pruner", choices=sorted(PRUNERS), default="asha")
    parser.add_argument("--seed", type=int, default=0, help="the sweeps' seed: which points they draw")
    parser.add_argument(
        "--reduction-factor", type=int, default=None, help="asha and hyperband: 1/factor of trials go on"
    )
    return parser.parse_args()


def base_spec(epochs: int, train_fraction: float, seed: int = 0) -> dict[str, Any]:
    return {
        "dataset": {"name": "fashion_mnist", "train_fraction": train_fraction, "test_fraction": 0.5},
        "model": {"arch": "lenet5"},
        "optimizer": {"type": "momentum", "lr": 0.05, "momentum": 0.9},
        "training": {"epochs": epochs, "batch_size": 64, "seed": seed},
    }


def sweep_body(
    name: str, trials: int, epochs: int, fraction: float, pruner: dict | None, seed: int
) -> dict[str, Any]:
    return {
        "name": name,
        "base": base_spec(epochs, fraction),
        "space": {
            "optimizer.lr": {"loguniform": [0.003, 0.3]},
            "optimizer.momentum": {"uniform": [0.5, 0.99]},
        },
        "method": "random",
        "max_trials": trials,
        "parallelism": 2,
        "objective": "val_acc",
        "early_stopping": pruner,
        "seed": seed,
    }


def run_sweep(stack: LiveStack, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    response = stack.http.post("/v1/sweeps", json=body)
    response.raise_for_status()
    sweep_id = response.json()["id"]
    while (sweep := stack.http.get(f"/v1/sweeps/{sweep_id}").json())["status"] == "running":
        time.sleep(1.0)
    if sweep["status"] != "succeeded":
        raise RuntimeError(f"sweep {sweep_id} {sweep['status']}: {sweep['error']}\n{stack.diagnostics()}")
    return sweep, time.monotonic() - started


def ensemble(stack: LiveStack, body: dict[str, Any]) -> dict[str, Any]:
    response = stack.http.post("/v1/ensembles", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"ensemble {body}: {response.status_code} {response.text}")
    ensemble_id = response.json()["id"]
    while (answer := stack.http.get(f"/v1/ensembles/{ensemble_id}").json())["status"] == "building":
        time.sleep(0.5)
    if answer["status"] != "ready":
        raise RuntimeError(f"ensemble {ensemble_id} failed: {answer['error']}")
    return answer


def describe(label: str, sweep: dict[str, Any], seconds: float) -> None:
    best = sweep["best"]
    statuses = [trial["status"] for trial in sweep["trials"]]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    params = ", ".join(f"{path} {value:.4g}" for path, value in best["params"].items())
    print(
        f"{label:<9} trial_epochs {sweep['trial_epochs']:4d}  best val_acc {best['objective']:.4f} "
        f"(trial {best['number']}: {params})  {counts}  {seconds:.0f} s"
    )


def seed_ensemble(stack: LiveStack, best_job: dict[str, Any]) -> dict[str, Any]:
    """5 more runs of the best trial's spec, seeds 1-5, as one ensemble job's members."""
    spec = dict(best_job["spec"])
    spec["name"] = "best configuration, 5 seeds"
    spec["ensemble"] = {"members": ENSEMBLE_SIZE, "strategy": "fanout"}
    spec["training"] = spec["training"] | {"seed": 1}
    job = stack.wait_finished(stack.submit(spec)["id"], timeout=7200)
    if job["status"] != "succeeded":
        raise RuntimeError(f"the 5-seed ensemble job {job['status']}: {job['error']}")
    return job


def main() -> None:
    args = parse_args()
    trials = args.trials or (8 if args.quick else 16)
    epochs = args.epochs or (3 if args.quick else 6)
    fraction = args.train_fraction or (0.05 if args.quick else 0.2)
    pruner = PRUNERS[args.pruner]
    if args.reduction_factor is not None and "reduction_factor" in pruner:
        pruner = pruner | {"reduction_factor": args.reduction_factor}
    print(
        f"search: lenet5 on fashion_mnist (train_fraction {fraction}), {trials} random trials of {epochs} "
        f"epochs over lr (log-uniform 0.003-0.3) and momentum (0.5-0.99), parallelism 2 on 2 workers of "
        f"1 thread; pruner {pruner}; seed {args.seed}; {os.cpu_count()} cores"
    )
    tmp = Path(tempfile.mkdtemp(prefix="trainyard-bench-sweep-"))
    redis_server = stack = None
    try:
        redis_server = start_private_redis(tmp / "redis")
        home = tmp / "stack"
        home.mkdir()
        settings = {"TRAINYARD_DEVICE": "cpu", "TRAINYARD_RATE_LIMIT_PER_MINUTE": "0", "OMP_NUM_THREADS": "1"}
        stack = LiveStack(home, f"sqlite:///{home / 'trainyard.db'}", redis_server.url, settings=settings)
        stack.start_api()
        stack.start_worker()
        stack.start_worker()

        search = (trials, epochs, fraction)
        unpruned, unpruned_s = run_sweep(stack, sweep_body("unpruned", *search, None, args.seed))
        describe("unpruned", unpruned, unpruned_s)
        pruned, pruned_s = run_sweep(stack, sweep_body(args.pruner, *search, pruner, args.seed))
        describe(args.pruner, pruned, pruned_s)

        greedy = ensemble(stack, {"from_sweep": unpruned["id"], "select": "greedy", "size": ENSEMBLE_SIZE})
        top_k = ensemble(stack, {"from_sweep": unpruned["id"], "select": "top_k", "size": ENSEMBLE_SIZE})
        best_job = stack.job(unpruned["best"]["job_id"])
        seeds = seed_ensemble(stack, best_job)
        best_single = greedy["evaluation"]["best_single"]
        print()
        print(f"| ensemble (test split, {greedy['evaluation']['test_samples']} images) | test accuracy |")
        print("|---|---|")
        print(f"| best single trial (chosen on validation) | {best_single['accuracy']:.4f} |")
        print(f"| sweep ensemble, greedy {ENSEMBLE_SIZE} (Caruana 2004) | "
              f"{greedy['evaluation']['ensemble_accuracy']:.4f} |")
        print(f"| sweep ensemble, top {ENSEMBLE_SIZE} | {top_k['evaluation']['ensemble_accuracy']:.4f} |")
        print(f"| best configuration, {ENSEMBLE_SIZE} seeds ({ENSEMBLE_SIZE} x {epochs} more epochs) | "
              f"{seeds['metrics']['ensemble_accuracy']:.4f} |")
        chosen = [member["run_id"] for member in greedy["members"]]
        print(f"greedy members: {len(set(chosen))} distinct trials of {len(chosen)} picks")
        print()
        gap = (unpruned["best"]["objective"] - pruned["best"]["objective"]) * 100
        print(f"pruned_best_gap={gap:.2f}")
        print(f"trial_epoch_ratio={pruned['trial_epochs'] / unpruned['trial_epochs']:.3f}")
    finally:
        if stack is not None:
            stack.stop()
        if redis_server is not None:
            redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
