"""trainyard's ensemble predictor against a plain Python loop over the members.

    python bench/ensemble_predict.py [--quick] [--threads N] [--members K] [--batches 1,256]

K (default 10) LeNet-5 members, randomly initialised from seeds 0..K-1 (timing does not depend on what the
weights learned), method mean_probs, on digits test images preprocessed as in training (models.datasets.
load_splits, loaded once before any timing), in this one process with the same torch thread count (N,
default all cores; OMP_NUM_THREADS and torch.set_num_threads).

- loop: what one writes first: each member its own eval-mode nn.Module (models.cnn.build_model and
  load_state_dict), under torch.inference_mode `torch.stack([m(x).softmax(-1) for m in models]).mean(0)`.
- trainyard: models.ensemble.EnsemblePredictor(members, "mean_probs").predict_proba(x), which picks its
  execution path by batch size; also shown forced to each path (vectorized: the members as one grouped
  network; sequential: member by member) so that the crossover can be read off a sweep of --batches.

Per batch size: one warm-up call of each side (kernels, allocator) also sets how many calls make one timed
block (about --block-s seconds of the loop); then the sides alternate for several rounds so that drift of
the shared machine's speed hits all alike. A side's time is the median over rounds of its per-call mean in
a block; the spread is the range of the per-round ratios. The two sides' probabilities must agree to 1e-5.

Prints per batch size a line of latencies, then `batch=<B> ratio=<loop time / trainyard time>`; the last
line is the last batch size's (goal: >= 3 at batch 1, >= 0.95 at batch 256).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter blocks (under a minute)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--members", type=int, default=10, help="K")
    parser.add_argument("--batches", default="1,256", help="comma-separated batch sizes, in this order")
    parser.add_argument("--rounds", type=int, default=None, help="override the timed rounds")
    parser.add_argument("--block-s", type=float, default=None, help="override the seconds per timed block")
    return parser.parse_args()


ARGS = parse_args()
# Before torch is imported, so that its thread pools are sized once, the same for both sides.
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import torch  # noqa: E402

from models.cnn import build_model  # noqa: E402
from models.datasets import load_splits  # noqa: E402
from models.ensemble import EnsemblePredictor, Member  # noqa: E402

FULL_ROUNDS, QUICK_ROUNDS = 15, 7
FULL_BLOCK_S, QUICK_BLOCK_S = 0.3, 0.1
MODEL = {"arch": "lenet5"}
DATASET = {"name": "digits"}


def make_members(k: int, splits) -> list[Member]:
    members = []
    for seed in range(k):
        torch.manual_seed(seed)
        model = build_model(MODEL, splits.input_shape, splits.num_classes)
        meta = {
            "spec": {"dataset": DATASET, "model": MODEL},
            "input_shape": list(splits.input_shape),
            "num_classes": splits.num_classes,
            "mean": splits.mean,
            "std": splits.std,
            "member": seed,
            "seed": seed,
        }
        members.append(Member(model.state_dict(), meta))
    return members


def loop_predictor(members: list[Member]):
    """The members as independent modules, averaged by hand."""
    models = []
    for member in members:
        model = build_model(member.meta["spec"]["model"], member.input_shape, member.num_classes)
        model.load_state_dict(member.state_dict)
        models.append(model.eval())

    @torch.inference_mode()
    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([model(x).softmax(-1) for model in models]).mean(0)

    return predict


def per_call(side, x: torch.Tensor, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        side(x)
    return (time.perf_counter() - started) / calls


def bench_batch(sides: dict, x: torch.Tensor, rounds: int, block_s: float) -> dict[str, list[float]]:
    reference = sides["loop"](x)
    for name, side in sides.items():  # warm-up, and the same numbers from every side
        error = (side(x) - reference).abs().max().item()
        assert error <= 1e-5, f"{name} differs from the loop by {error:.2e}"
    calls = max(1, round(block_s / per_call(sides["loop"], x, 1)))
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, side in sides.items():
            times[name].append(per_call(side, x, calls))
    return times


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    rounds = ARGS.rounds or (QUICK_ROUNDS if ARGS.quick else FULL_ROUNDS)
    block_s = ARGS.block_s or (QUICK_BLOCK_S if ARGS.quick else FULL_BLOCK_S)
    batches = [int(b) for b in ARGS.batches.split(",")]
    splits = load_splits(DATASET, MODEL)
    test_x = splits.test[0]
    members = make_members(ARGS.members, splits)
    predictor = EnsemblePredictor(members, "mean_probs")
    size = "x".join(map(str, splits.input_shape))
    print(
        f"ensemble: {ARGS.members} lenet5 members, mean_probs, inputs {size} (digits test images), "
        f"device cpu, torch {torch.__version__}, threads {ARGS.threads} "
        f"({os.cpu_count()} cores), {rounds} rounds; predictor vectorizes batches up to "
        f"{predictor.stack.vectorize_max_batch}, holds {predictor.nbytes / 1e6:.2f} MB"
    )
    sides = {
        "loop": loop_predictor(members),
        "trainyard": predictor.predict_proba,
        "vectorized": lambda x: predictor.predict_proba(x, "vectorized"),
        "sequential": lambda x: predictor.predict_proba(x, "sequential"),
    }
    for batch in batches:
        x = test_x[torch.arange(batch) % len(test_x)]
        times = bench_batch(sides, x, rounds, block_s)
        median = {name: statistics.median(t) for name, t in times.items()}
        per_round = [loop / ours for loop, ours in zip(times["loop"], times["trainyard"], strict=True)]
        print(
            f"  batch {batch:4d}: "
            + ", ".join(f"{name} {m * 1e3:.3f} ms" for name, m in median.items())
            + f"; per-round ratio {min(per_round):.2f}..{max(per_round):.2f}; "
            + f"vectorized/sequential speedup {median['sequential'] / median['vectorized']:.2f}"
        )
        print(f"batch={batch} ratio={median['loop'] / median['trainyard']:.3f}")


if __name__ == "__main__":
    main()
