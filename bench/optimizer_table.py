"""LeNet-5 on digits with each optimizer's catalog defaults: accuracy, epochs to 95% and time, as a table.

Trains directly (load_splits + worker.training.train, no service) for 15 epochs per seed and rewrites
the table in docs/benchmarks.md between the optimizer-table markers. `--check` prints it without writing;
`--quick` (what `make bench` runs) trains one seed and only prints. Last line: value=<lowest mean
test accuracy>.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- optimizer-table:start -->", "<!-- optimizer-table:end -->"
EPOCHS = 15
TARGET_ACC = 0.95


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seed 0 only; print, do not write the table")
    parser.add_argument("--check", action="store_true", help="print the table, do not write it")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (LeNet-5 gains little)")
    return parser.parse_args()


ARGS = parse_args()
# Before torch is imported, so that its thread pools have this size.
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.reporters import ValAccuracies  # noqa: E402
from models.catalog import catalog  # noqa: E402
from models.datasets import load_splits  # noqa: E402
from models.spec import JobSpec  # noqa: E402
from worker.training import train  # noqa: E402


def job_spec(optimizer: str, seed: int) -> JobSpec:
    return JobSpec.model_validate(
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "lenet5"},
            "optimizer": {"type": optimizer},
            "training": {"epochs": EPOCHS, "seed": seed},
        }
    )


def run(optimizer: str, seed: int) -> tuple[float, int | None, float]:
    """Test accuracy, first epoch whose val accuracy reaches 95% (None if none), wall seconds."""
    spec = job_spec(optimizer, seed)
    started = time.perf_counter()
    splits = load_splits(spec.dataset, spec.model)
    reporter = ValAccuracies()
    result = train(spec, splits, reporter, device=torch.device("cpu"))
    seconds = time.perf_counter() - started
    first = next((i + 1 for i, acc in enumerate(reporter.val_acc) if acc >= TARGET_ACC), None)
    return result.metrics["test_acc"], first, seconds


def describe_defaults(params: dict) -> str:
    return ", ".join(f"`{name}` {p['default']:g}" for name, p in params.items() if p["default"] is not None)


def table(rows: list[dict], seeds: list[int], batch_size: int) -> str:
    seed_list = ", ".join(map(str, seeds))
    lines = [
        f"LeNet-5 on `digits`, {EPOCHS} epochs, batch {batch_size}, constant lr, seeds {seed_list}; "
        f"CPU, {ARGS.threads} torch thread(s), torch {torch.__version__.split('+')[0]}. "
        "Regenerate with `python bench/optimizer_table.py`.",
        "",
        "| optimizer | defaults | test accuracy, mean ± sd (min) | epochs to 95% val accuracy, per seed "
        "| wall time per run |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        accs = row["test_acc"]
        sd = statistics.pstdev(accs) if len(accs) > 1 else 0.0
        epochs = ", ".join("–" if e is None else str(e) for e in row["epochs_to_95"])
        lines.append(
            f"| `{row['optimizer']}` | {row['defaults']} | {statistics.mean(accs):.3f} ± {sd:.3f} "
            f"({min(accs):.3f}) | {epochs} | {statistics.mean(row['seconds']):.1f} s |"
        )
    return "\n".join(lines)


def write_report(text: str) -> None:
    page = REPORT.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(page):
        raise SystemExit(f"{REPORT.relative_to(ROOT)} has no {START} ... {END} markers")
    REPORT.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", page))


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    seeds = [0] if ARGS.quick else list(range(ARGS.seeds))
    optimizers = catalog()["optimizers"]
    load_splits({"name": "digits"}, {"arch": "lenet5"})  # warm the dataset cache outside the timings
    rows = []
    for entry in optimizers:
        row = {
            "optimizer": entry["type"],
            "defaults": describe_defaults(entry["params"]),
            "test_acc": [],
            "epochs_to_95": [],
            "seconds": [],
        }
        for seed in seeds:
            acc, first, seconds = run(entry["type"], seed)
            row["test_acc"].append(acc)
            row["epochs_to_95"].append(first)
            row["seconds"].append(seconds)
            print(f"{entry['type']:9s} seed {seed}: test {acc:.4f}, val 95% at epoch {first}, {seconds:.1f}s")
        rows.append(row)

    text = table(rows, seeds, job_spec("sgd", 0).training.batch_size)
    print()
    print(text)
    print()
    if ARGS.check or ARGS.quick:
        print(f"{REPORT.relative_to(ROOT)} not written (--check or --quick)")
    else:
        write_report(text)
        print(f"written to {REPORT.relative_to(ROOT)}")
    print(f"value={min(statistics.mean(r['test_acc']) for r in rows):.4f}")


if __name__ == "__main__":
    main()
