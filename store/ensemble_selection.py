"""An ensemble's members chosen from stored runs (a sweep's trials): the k best by their validation metric,
or greedy selection over their stored validation predictions (models/ensemble_selection.py).

Only validation numbers are read: each run's metrics and its val-predictions file. No dataset is loaded,
so the test split cannot sway the choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from models.ensemble_selection import greedy_selection, top_k
from models.spec import SpecError
from store.artifacts import load_val_predictions, val_predictions_path
from store.ensembles import member_ref
from store.objects import ArtifactStore
from store.tables import Run

Selection = Literal["top_k", "greedy"]
Objective = Literal["val_acc", "val_loss"]  # of each run's kept weights, as its metrics hold them

# How greedy selection scores an ensemble for each objective, and which way top_k ranks the runs.
GREEDY_METRIC = {"val_acc": "accuracy", "val_loss": "nll"}
HIGHER_IS_BETTER = {"val_acc": True, "val_loss": False}


def select_members(
    candidates: Sequence[Run],
    select: Selection,
    size: int,
    objective: Objective = "val_acc",
    *,
    store: ArtifactStore,
) -> list[dict[str, Any]]:
    """Member refs for create_ensemble: `size` of them, a run chosen twice by greedy appearing twice.

    top_k: the `size` runs best by `objective` in their metrics (ties: the earlier candidate). greedy:
    Caruana et al.'s forward selection with replacement on the runs' validation predictions, which must
    all be of one validation split. A SpecError says what is wrong: at ("select",) a run without the
    metric or the predictions, at ("size",) a size top_k cannot fill, at ("from_sweep",) the split.
    """
    if objective not in GREEDY_METRIC:
        raise SpecError(("objective",), f"objective must be val_acc or val_loss, got {objective!r}")
    if not candidates:
        raise SpecError(("from_sweep",), "there are no succeeded runs to select from")
    if size < 1:
        raise SpecError(("size",), f"size must be at least 1, got {size}")
    if select == "top_k":
        if size > len(candidates):
            raise SpecError(("size",), f"top_k of {size} from {len(candidates)} runs: size is at most that")
        chosen = top_k([_metric(run, objective) for run in candidates], size, HIGHER_IS_BETTER[objective])
    elif select == "greedy":
        probs, labels = _shared_split([run_val_predictions(run, store) for run in candidates], candidates)
        chosen = greedy_selection(probs, labels, size, GREEDY_METRIC[objective])
    else:
        raise SpecError(("select",), f"select must be top_k or greedy, got {select!r}")
    return [member_ref(candidates[index].id) for index in chosen]


def run_val_predictions(run: Run, store: ArtifactStore) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's stored (probs, labels) on its validation split; a SpecError naming the run if it has none
    (runs stored before validation predictions were kept)."""
    try:
        return load_val_predictions(val_predictions_path(store.at(run.weights_path)))
    except FileNotFoundError:
        raise SpecError(
            ("select",),
            f"run {run.id} has no stored validation predictions (it was trained before they were kept): "
            "select top_k, or train it again",
        ) from None


def _metric(run: Run, objective: Objective) -> float:
    value = (run.metrics or {}).get(objective)
    if value is None:
        raise SpecError(("select",), f"run {run.id} has no {objective} in its metrics")
    return float(value)


def _shared_split(
    predictions: list[tuple[torch.Tensor, torch.Tensor]], runs: Sequence[Run]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The candidates' probabilities and their one labels tensor; a SpecError when a run's labels differ
    from the first's: its predictions are of another split, and averaging them would mean nothing."""
    labels = predictions[0][1]
    for run, (probs, own) in zip(runs, predictions, strict=True):
        if not torch.equal(own, labels) or probs.shape[1] != predictions[0][0].shape[1]:
            raise SpecError(
                ("from_sweep",),
                f"runs {runs[0].id} and {run.id} were validated on different splits (or classes): "
                "greedy selection needs one validation split",
            )
    return [probs for probs, _ in predictions], labels
