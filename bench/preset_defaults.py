"""Every preset's minimal spec, as validation resolves it: test accuracy on digits per seed, and whether it
diverges on a slice of Fashion-MNIST, with the wall time of each run.

    python bench/preset_defaults.py [--quick] [--seeds N] [--presets alexnet,...] [--optimizer JSON]
        [--epochs E] [--fashion-fraction F] [--threads T]

Each run is `{"dataset": {"name": ...}, "model": {"arch": preset}}` validated into a JobSpec (the preset's
defaults filled in, as the stored spec has them), trained directly (models.datasets.load_splits +
worker.training.train on the CPU, no service). Fashion-MNIST trains one epoch on `--fashion-fraction` of
its training split (val and test cut to a few hundred images, since an AlexNet evaluation costs as much
per image as a training step's forward pass); a divergence there is the loop's own (worker.reporter's
Diverged: a non-finite loss, or one 1000x its start). `--optimizer` and `--epochs` replace the defaults, to
measure a candidate. Lines per run, then the table (docs/benchmarks.md#preset-defaults); last line
value=<lowest digits test accuracy>.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seed 0 only")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 on digits (default 3)")
    parser.add_argument("--presets", default=None, help="comma-separated (default: all)")
    parser.add_argument("--optimizer", type=json.loads, default=None, help="replace the optimizer (JSON)")
    parser.add_argument("--epochs", type=int, default=None, help="replace the epochs on digits")
    parser.add_argument("--fashion-fraction", type=float, default=0.02, help="0 skips Fashion-MNIST")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    return parser.parse_args()


ARGS = parse_args()
# Before torch is imported, so that its thread pools have this size.
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.reporters import ValAccuracies  # noqa: E402
from models.datasets import load_splits  # noqa: E402
from models.presets import PRESETS  # noqa: E402
from models.spec import JobSpec  # noqa: E402
from worker.reporter import Diverged  # noqa: E402
from worker.training import train  # noqa: E402

FASHION_EVAL = {"val_fraction": 0.01, "test_fraction": 0.05}  # 600 val and 500 test images


def spec_for(preset: str, dataset: dict, epochs: int | None, seed: int = 0) -> JobSpec:
    """The minimal spec (a seed other than 0, --optimizer and epochs where given)."""
    spec: dict = {"dataset": dataset, "model": {"arch": preset}}
    if ARGS.optimizer is not None:
        spec["optimizer"] = ARGS.optimizer
    training = ({"epochs": epochs} if epochs is not None else {}) | ({"seed": seed} if seed else {})
    if training:
        spec["training"] = training
    return JobSpec.model_validate(spec)


def line(preset: str, dataset: str, seed: int, result: dict) -> str:
    """A run's line of JSON, its figures to 3 decimals."""
    figures = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    val_acc = [round(v, 3) for v in result["val_acc"]]
    return json.dumps({"preset": preset, "dataset": dataset, "seed": seed} | figures | {"val_acc": val_acc})


def run(spec: JobSpec) -> dict:
    started = time.perf_counter()
    splits = load_splits(spec.dataset, spec.model)
    accuracies = ValAccuracies()
    try:
        metrics = train(spec, splits, accuracies, device=torch.device("cpu")).metrics
        outcome = {"test_acc": metrics["test_acc"], "train_loss": metrics["train_loss"], "diverged": None}
    except Diverged as diverged:
        outcome = {"test_acc": None, "train_loss": None, "diverged": str(diverged)}
    return outcome | {"val_acc": accuracies.val_acc, "seconds": time.perf_counter() - started}


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    presets = ARGS.presets.split(",") if ARGS.presets else list(PRESETS)
    seeds = range(1 if ARGS.quick else ARGS.seeds)
    print(f"CPU, {ARGS.threads} torch thread(s) ({os.cpu_count()} cores), torch {torch.__version__}")
    rows, lowest = [], 1.0
    for preset in presets:
        for seed in seeds:
            spec = spec_for(preset, {"name": "digits"}, ARGS.epochs, seed)
            result = run(spec)
            lowest = min(lowest, result["test_acc"] or 0.0)
            rows.append((preset, "digits", seed, spec, result))
            print(line(preset, "digits", seed, result), flush=True)
        if ARGS.fashion_fraction > 0:
            fashion = {"name": "fashion_mnist", "train_fraction": ARGS.fashion_fraction} | FASHION_EVAL
            spec = spec_for(preset, fashion, 1)
            result = run(spec)
            rows.append((preset, "fashion_mnist", 0, spec, result))
            print(line(preset, "fashion_mnist", 0, result), flush=True)
    print()
    print("| preset | data | optimizer | epochs | seed | val accuracy per epoch | test accuracy | time |")
    print("|---|---|---|---|---|---|---|---|")
    for preset, data, seed, spec, result in rows:
        optimizer = f"{spec.optimizer.type} {spec.optimizer.lr}"
        vals = " ".join(f"{v:.3f}" for v in result["val_acc"])
        test = f"{result['test_acc']:.3f}" if result["diverged"] is None else "diverged"
        print(
            f"| {preset} | {data} | {optimizer} | {spec.training.epochs} | {seed} | {vals} | {test} "
            f"| {result['seconds']:.0f} s |"
        )
    print(f"value={lowest:.4f}")


if __name__ == "__main__":
    main()
