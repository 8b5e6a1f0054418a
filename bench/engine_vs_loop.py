"""trainyard's training engine against the hand-written PyTorch loop everyone starts from.

    python bench/engine_vs_loop.py [--quick] [--dataset digits|fashion_mnist] [--threads N] [--compile]
                                   [--optimizer sgd|momentum]

Both train the same network (models.cnn.build_model, lenet5, same seed so the same initial weights) on the
same data (models.datasets.load_splits of digits, or of Fashion-MNIST's whole training split: 51,000 images,
9,000 kept for validation; loaded once before any timing), with the same optimizer
(models.optim.build_optimizer; momentum by default), the same lr decay (x0.7 each epoch: StepLR in the loop as
in mnist/main.py, the spec's step schedule in the engine), batch size and epochs, in this one process with the
same torch thread count (N, default all cores; OMP_NUM_THREADS and torch.set_num_threads).

- loop: in the style of pytorch/examples mnist/main.py: a DataLoader over a TensorDataset of the splits'
  network inputs, made once before any timing (mnist/main.py makes them per sample, in its timed loop:
  here the loop gets them free), with batch_size, shuffle=True, no worker processes; model.train(),
  zero_grad / forward / cross_entropy / backward / step, `loss.item()` summed every step; after each epoch
  a test() over the validation split under torch.no_grad() with a DataLoader of 1000; the test split once
  at the end.
- engine: worker.training.train(spec, splits) with no reporter: the images as stored (uint8) on the device,
  batches as indexed slices made network inputs there (resized, normalised: inside the timing), losses read
  every 10 steps, evaluation under inference_mode, and whatever the engine chooses by itself on this device
  (channels_last for conv nets; bf16 autocast on CUDA only; torch.compile as training.compile "auto", the
  default, decides: its reason is printed).
- engine (NCHW): the engine with channels_last forced off, to show what the memory format gives alone.
- engine (compiled), with --compile: the spec's `training.compile` on; its first (warm-up) run pays the
  compile, the timed runs hit the process's compiled code as a long job would.

Each side's time runs from building the model to the final test accuracy. One warm-up run of each side
first (kernels, allocator), then the sides alternate (loop, engine, NCHW, [compiled]) for several rounds so
that drift of the machine's speed hits all alike; medians are compared. The final test accuracies must agree
within one point (the two shuffle differently).

Last line `ratio=<median loop time / median engine time>` (goal on the CPU: >= 1.2 on digits, 1.3 on
fashion_mnist); before it `channels_last_speedup=` and, with --compile, `compiled_ratio=` (loop time /
compiled engine time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and rounds (under a minute)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs")
    parser.add_argument("--rounds", type=int, default=None, help="override the timed rounds")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=("sgd", "momentum"), default="momentum")
    parser.add_argument("--compile", action="store_true", help="also time the engine with torch.compile")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides train there)")
    parser.add_argument("--dataset", choices=("digits", "fashion_mnist"), default="digits")
    return parser.parse_args()


ARGS = parse_args()
# Before torch is imported, so that its thread pools are sized once, the same for both sides.
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.optim.lr_scheduler import StepLR  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from models.cnn import build_model  # noqa: E402
from models.datasets import Splits, load_splits  # noqa: E402
from models.optim import build_optimizer  # noqa: E402
from models.spec import JobSpec  # noqa: E402
from worker.training import train  # noqa: E402

# (epochs, rounds) per dataset, full and --quick: Fashion-MNIST's epoch is 40x digits'.
RUNS = {
    "digits": {"full": (20, 7), "quick": (6, 4)},
    "fashion_mnist": {"full": (2, 5), "quick": (1, 3)},
}
OPTIMIZERS = {
    "sgd": {"type": "sgd", "lr": 0.1},
    "momentum": {"type": "momentum", "lr": 0.05, "momentum": 0.9},
}
# The lr decays by GAMMA every epoch (mnist/main.py's StepLR default): both runs settle, so their test
# accuracies agree although they shuffle differently.
GAMMA = 0.7
DEVICE = torch.device(ARGS.device)


def job_spec(epochs: int, compile: bool | str = "auto") -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "bench-engine-vs-loop",
            "dataset": {"name": ARGS.dataset},
            "model": {"arch": "lenet5"},
            "optimizer": OPTIMIZERS[ARGS.optimizer],
            "lr_schedule": {"type": "step", "step_size": 1, "gamma": GAMMA, "unit": "epoch"},
            "training": {"epochs": epochs, "batch_size": ARGS.batch_size, "seed": 0, "compile": compile},
        }
    )


# ---------------------------------------------------------------- the hand-written loop (mnist/main.py style)


def loop_train(model, device, train_loader, optimizer) -> float:
    model.train()
    total = 0.0
    for data, target in train_loader:
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.cross_entropy(output, target)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(train_loader)


def loop_test(model, device, test_loader) -> tuple[float, float]:
    model.eval()
    test_loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.cross_entropy(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    n = len(test_loader.dataset)
    return test_loss / n, correct / n


@dataclass(frozen=True)
class LoopData:
    """The splits as network inputs, made once before any timing: what the hand-written loop trains on."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    input_shape: tuple[int, int, int]
    num_classes: int


def run_loop(spec: JobSpec, splits: LoopData) -> tuple[float, float]:
    """Wall seconds and final test accuracy of the hand-written loop."""
    started = time.perf_counter()
    torch.manual_seed(spec.training.seed)
    model = build_model(spec.model, splits.input_shape, splits.num_classes).to(DEVICE)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    train_loader = DataLoader(
        TensorDataset(*splits.train),
        batch_size=spec.training.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(spec.training.seed),
        pin_memory=DEVICE.type == "cuda",  # as mnist/main.py does on CUDA
    )
    val_loader = DataLoader(TensorDataset(*splits.val), batch_size=1000)
    test_loader = DataLoader(TensorDataset(*splits.test), batch_size=1000)
    scheduler = StepLR(optimizer, step_size=1, gamma=GAMMA)
    for _ in range(spec.training.epochs):
        loop_train(model, DEVICE, train_loader, optimizer)
        loop_test(model, DEVICE, val_loader)
        scheduler.step()
    _, test_acc = loop_test(model, DEVICE, test_loader)
    return time.perf_counter() - started, test_acc


# ---------------------------------------------------------------- the engine


def run_engine(spec: JobSpec, splits: Splits, channels_last: bool | None = None):
    started = time.perf_counter()
    result = train(spec, splits, device=DEVICE, channels_last=channels_last)
    return time.perf_counter() - started, result.metrics["test_acc"], result.engine


def device_name() -> str:
    return torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu"


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    default_epochs, default_rounds = RUNS[ARGS.dataset]["quick" if ARGS.quick else "full"]
    epochs, rounds = ARGS.epochs or default_epochs, ARGS.rounds or default_rounds
    spec, compiled_spec = job_spec(epochs), job_spec(epochs, compile=True)
    splits = load_splits(spec.dataset, spec.model)
    loop_data = LoopData(splits.train, splits.val, splits.test, splits.input_shape, splits.num_classes)
    print(
        f"job: lenet5 on {ARGS.dataset} ({len(splits.train_raw[1])} train images, {splits.input_shape[1]}x"
        f"{splits.input_shape[2]}), {ARGS.optimizer} {OPTIMIZERS[ARGS.optimizer]}, epochs {epochs}, "
        f"batch {ARGS.batch_size}, seed 0, device {device_name()}, torch {torch.__version__}, "
        f"threads {ARGS.threads} ({os.cpu_count()} cores), {rounds} rounds"
    )

    sides = {
        "loop": lambda: run_loop(spec, loop_data),
        "engine": lambda: run_engine(spec, splits),
        "engine (NCHW)": lambda: run_engine(spec, splits, channels_last=False),
    }
    if ARGS.compile:
        sides["engine (compiled)"] = lambda: run_engine(compiled_spec, splits)

    # Warm-up: first kernels and allocations; for the compiled side, the compile itself (shown, not timed).
    run_loop(job_spec(1), loop_data)
    _, _, features = run_engine(job_spec(1), splits)
    print(f"engine features on this device: {features}")
    if ARGS.compile:
        seconds, _, features = run_engine(job_spec(1, compile=True), splits)
        print(f"compiled engine: {features}; its warm-up (1 epoch and the compile) took {seconds:.1f} s")

    times: dict[str, list[float]] = {name: [] for name in sides}
    accuracy: dict[str, float] = {}
    for _ in range(rounds):
        for name, side in sides.items():
            seconds, accuracy[name], *features = side()
            times[name].append(seconds)
            chose = f"  ({features[0].compile_reason})" if features else ""
            print(f"{name:18s} {seconds:7.2f} s  test_acc {accuracy[name]:.4f}{chose}")

    median = {name: statistics.median(t) for name, t in times.items()}
    print("medians: " + ", ".join(f"{name} {m:.2f} s" for name, m in median.items()))
    gap = abs(accuracy["loop"] - accuracy["engine"]) * 100
    print(
        f"final test accuracy: loop {accuracy['loop']:.4f}, engine {accuracy['engine']:.4f} "
        f"({gap:.2f} points apart: {'within' if gap <= 1.0 else 'NOT within'} one point)"
    )
    print(f"channels_last_speedup={median['engine (NCHW)'] / median['engine']:.3f}")
    if ARGS.compile:
        print(f"compiled_ratio={median['loop'] / median['engine (compiled)']:.3f}")
    print(f"ratio={median['loop'] / median['engine']:.3f}")


if __name__ == "__main__":
    main()
