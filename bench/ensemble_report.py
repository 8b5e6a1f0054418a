"""The lecture's ensemble claim, measured: members' accuracies, the ensemble's, and the gain per method.

    python bench/ensemble_report.py [--quick] [--write]      (make report)

Trains 5 lenet5 members (seeds 0-4, momentum SGD, the catalog's defaults otherwise) on digits with the whole
training split, and again on a harder split that keeps 20% of the training data, then scores each combining
method on the test split with models.ensemble.evaluate_ensemble, exactly as the service does. With
--write (formerly --write-readme, still accepted) the table replaces the one between the `ensemble-report`
markers in docs/benchmarks.md, whatever the numbers turn out to be. Last line `value=<mean_probs gain on
the harder split, in points>`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from models.datasets import load_splits  # noqa: E402
from models.ensemble import METHODS, Member, evaluate_ensemble  # noqa: E402
from models.spec import JobSpec  # noqa: E402
from worker.run_job import rebuild_info  # noqa: E402
from worker.vectorized import train_sequential  # noqa: E402

MEMBERS = 5
REPORT = ROOT / "docs" / "benchmarks.md"
MARKERS = ("<!-- ensemble-report:start -->", "<!-- ensemble-report:end -->")
SPLITS = {"all training data": 1.0, "20% of the training data": 0.2}


class Quiet:
    def report(self, points, progress):
        return None

    def epoch_end(self, state, metrics, progress):
        return None


def job_spec(train_fraction: float, epochs: int) -> JobSpec:
    return JobSpec.model_validate(
        {
            "dataset": {"name": "digits", "train_fraction": train_fraction},
            "model": {"arch": "lenet5"},
            "optimizer": {"type": "momentum"},
            "training": {"epochs": epochs, "batch_size": 64, "seed": 0},
            "ensemble": {"members": MEMBERS},
        }
    )


def measure(train_fraction: float, epochs: int) -> tuple[int, dict[str, dict]]:
    spec = job_spec(train_fraction, epochs)
    splits = load_splits(spec.dataset, spec.model)
    results = train_sequential(spec, splits, [Quiet() for _ in range(MEMBERS)], device=torch.device("cpu"))
    members = [
        Member(result.model.state_dict(), rebuild_info(spec.member_spec(k), splits, "report", k))
        for k, result in enumerate(results)
    ]
    # As worker/ensemble_build.py scores an ensemble: inputs made from the stored images a batch at a time.
    evaluations = {
        method: evaluate_ensemble(
            members,
            method,
            *splits.test_raw,
            train_batches=splits.batches(splits.train_raw[0], 256),
            inputs=splits.prepare,
        )
        for method in METHODS
    }
    return len(splits.train_raw[1]), evaluations


def table(rows: list[tuple[str, int, dict[str, dict]]], epochs: int) -> str:
    lines = [
        f"5 lenet5 members (seeds 0-4, momentum defaults, {epochs} epochs, batch 64) on digits; test split "
        "of 270 images. Accuracies in %; NLL is the mean negative log-likelihood.",
        "",
        "| training data | method | members' accuracies | mean member | ensemble | gain | member NLL | "
        "ensemble NLL |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, n_train, evaluations in rows:
        for method, e in evaluations.items():
            accs = ", ".join(f"{100 * a:.1f}" for a in e["member_accuracies"])
            mean, ensemble, gain = e["mean_member_accuracy"], e["ensemble_accuracy"], e["gain"]
            lines.append(
                f"| {label} ({n_train} images) | `{method}` | {accs} | {100 * mean:.2f} | "
                f"{100 * ensemble:.2f} | {100 * gain:+.2f} | {e['mean_member_nll']:.3f} | "
                f"{e['ensemble_nll']:.3f} |"
            )
    return "\n".join(lines)


def write_report(text: str) -> None:
    page = REPORT.read_text()
    pattern = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.S)
    if not pattern.search(page):
        raise SystemExit(f"{REPORT.relative_to(ROOT)} has no {MARKERS[0]} ... {MARKERS[1]} block")
    REPORT.write_text(pattern.sub(lambda _: f"{MARKERS[0]}\n{text}\n{MARKERS[1]}", page))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs instead of 15")
    parser.add_argument(
        "--write", "--write-readme", action="store_true", help="replace the table in docs/benchmarks.md"
    )
    args = parser.parse_args()
    epochs = 3 if args.quick else 15
    rows = [(label, *measure(fraction, epochs)) for label, fraction in SPLITS.items()]
    text = table(rows, epochs)
    print(text)
    if args.write:
        write_report(text)
        print(f"{REPORT.relative_to(ROOT)} updated")
    hard = rows[-1][2]["mean_probs"]
    print(f"value={100 * hard['gain']:.2f}")


if __name__ == "__main__":
    main()
