"""Peak resident memory of a job's data, loaded and then trained on, against its float32 footprint.

    python bench/memory.py [--quick] [--samples N]

Each case runs in a fresh Python process, so one case's caches and freed pages never count for the next:
the process imports everything, notes its peak resident set (getrusage's ru_maxrss), loads the splits as a
worker does and notes the peak again (the growth is what holding the data costs), then trains a few steps
(worker.training.train, stopped by its reporter as the service stops a job) and notes it once more: the
network, its optimizer state and the batches made network inputs on the way. The float32 footprint is
every sample at the network's input size as float32 (N×C×H×W×4), what storing resized float32 splits
(as the worker did before it kept uint8 images and made inputs a batch at a time) needs at the least;
`estimate` is models.datasets.data_bytes, which the API checks against max_dataset_bytes.

Cases: Fashion-MNIST at LeNet-5's 32 px (skipped where it is not installed) and a synthetic job of
`--samples` 3×224×224 images at AlexNet's 224 px (50,000; 2,000 with --quick). A case whose estimate
exceeds this machine's memory is skipped, not run into the OOM killer.

Last line `ratio=<peak growth / float32 footprint>` of the largest case run: below 1 means the data is
held in less than its float32 tensors would take.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from store.states import StopReason  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 synthetic images instead of 50,000")
    parser.add_argument("--samples", type=int, default=None, help="synthetic images (default 50,000)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one case, in a fresh process
    return parser.parse_args()


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


FLOAT32_BYTES = 4
TRAINING_STEPS = 3


class StopAfterSteps:
    """A reporter that stops the job after its first few steps, as a cancel would."""

    def report(self, points, progress):
        return StopReason.CANCELLED if progress["step"] >= TRAINING_STEPS else None

    def epoch_end(self, state, metrics, progress):
        return None


def measure(case: dict) -> dict:
    """In the child: the peak before and after load_splits and after a few steps, and the sizes beside it."""
    import math

    from models.datasets import data_bytes, dataset_info, load_splits
    from models.spec import JobSpec
    from worker.reporter import Stopped
    from worker.training import train

    spec = JobSpec.model_validate(case)
    info = dataset_info(spec.dataset, spec.model)
    before = peak_rss_bytes()
    splits = load_splits(spec.dataset, spec.model)
    loaded = peak_rss_bytes()
    try:
        train(spec, splits, StopAfterSteps(), report_every=1)
    except Stopped:
        pass
    trained = peak_rss_bytes()
    samples = sum(len(y) for _, y in (splits.train_raw, splits.val_raw, splits.test_raw))
    return {
        "growth": loaded - before,
        "training": trained - before,
        "float32": samples * math.prod(info.input_shape) * FLOAT32_BYTES,
        "estimate": data_bytes(spec.dataset, spec.model),
    }


def run_case(case: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(case)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.splitlines()[-1])


def machine_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return
    from models.datasets import availability, data_bytes

    samples = args.samples or (2_000 if args.quick else 50_000)
    cases = {
        "fashion_mnist, 32 px": {
            "dataset": {"name": "fashion_mnist"},
            "model": {"arch": "lenet5"},
            "optimizer": {"type": "momentum", "lr": 0.05},
        },
        f"synthetic {samples:,} x 3x224x224, 224 px": {
            "dataset": {"name": "synthetic", "channels": 3, "size": 224, "samples": samples},
            "model": {"arch": "alexnet"},
            "optimizer": {"type": "momentum", "lr": 0.01},
        },
    }
    ratio = None
    print(
        "| case | float32 footprint | estimate (data_bytes) | peak growth, loaded | growth / float32 "
        f"| peak growth, {TRAINING_STEPS} steps trained |"
    )
    print("|---|---|---|---|---|---|")
    for name, case in cases.items():
        if not availability(case["dataset"]["name"]).available:
            print(f"| {name} | skipped: not installed | | | | |")
            continue
        estimate = data_bytes(case["dataset"], case["model"])
        if estimate > machine_memory_bytes():
            print(
                f"| {name} | skipped: needs {estimate / 1e9:.1f} GB, this machine has "
                f"{machine_memory_bytes() / 1e9:.1f} GB | | | | |"
            )
            continue
        m = run_case(case)
        ratio = m["growth"] / m["float32"]
        print(
            f"| {name} | {m['float32'] / 1e9:.3f} GB | {m['estimate'] / 1e9:.3f} GB | "
            f"{m['growth'] / 1e9:.3f} GB | {ratio:.2f} | {m['training'] / 1e9:.3f} GB |"
        )
    print(f"ratio={ratio:.3f}" if ratio is not None else "ratio=nan")


if __name__ == "__main__":
    main()
