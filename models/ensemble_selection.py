"""Which trained models make an ensemble: the k best by a score, or greedy forward selection.

Both read validation numbers only: the trials' stored validation metrics (top_k) or their stored
validation probabilities (greedy_selection). The test split stays unseen until the chosen ensemble is
evaluated, so its test accuracy is an honest estimate. Pure PyTorch, like models/ensemble.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

SelectionMetric = Literal["accuracy", "nll"]

# An ensemble's probability of the true class is clamped here before its log: members whose softmax
# underflowed to 0 on a sample would make the ensemble infinitely bad, and every such candidate equally so,
# however often each is surely wrong; clamped, the one surely wrong less often ranks better.
MIN_PROB = 1e-12


def top_k(scores: Sequence[float], k: int, higher_is_better: bool) -> list[int]:
    """The indices of the k best scores, best first; equal scores in index order."""
    if not 1 <= k <= len(scores):
        raise ValueError(f"k must be between 1 and the {len(scores)} candidates, got {k}")
    if any(math.isnan(score) for score in scores):
        raise ValueError("a score is NaN: it cannot be ranked")
    sign = -1.0 if higher_is_better else 1.0
    return sorted(range(len(scores)), key=lambda i: (sign * scores[i], i))[:k]


def greedy_selection(
    val_probs: Sequence[torch.Tensor],
    labels: torch.Tensor,
    size: int,
    metric: SelectionMetric = "accuracy",
) -> list[int]:
    """Forward selection with replacement (Caruana, Niculescu-Mizil, Crew, Ksikes, "Ensemble Selection from
    Libraries of Models", ICML 2004): `size` rounds, each adding the candidate whose addition gives the best
    ensemble on the validation split, the ensemble being the mean of its members' probabilities (mean_probs).

    `val_probs[i]` is candidate i's probabilities (N x classes) on the validation split whose `labels` (N)
    are given. Answers the chosen indices in the order chosen, `size` of them, a candidate as often as it
    was chosen: chosen twice, it weighs twice in the mean. "accuracy": the most correct, ties broken by the
    lower negative log-likelihood, then the lower index; "nll": the lower mean negative log-likelihood,
    then the lower index. The first round therefore picks the best single candidate.

    Of the paper's refinements this uses selection with replacement: without it the ensemble soon gets
    worse as the good candidates run out, and how often a candidate is chosen weighs it. It starts from the
    empty ensemble, not from the paper's sorted initialization (the N best candidates at once), and does
    not bag (the paper's repeated selections from random halves of the library, averaged): both curb
    overfitting the hillclimb set, which matters most with the paper's libraries of about 2,000 models; a
    sweep has tens of trials. The validation split is the hillclimb set; it also chose each trial's kept
    epoch, so the selected ensemble's validation score is optimistic: its test score is the one to report.
    """
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    if not val_probs:
        raise ValueError("there are no candidates to select from")
    if metric not in ("accuracy", "nll"):
        raise ValueError(f"metric must be accuracy or nll, got {metric!r}")
    probs = torch.stack(list(val_probs)).float()  # candidate x sample x class
    if probs.shape[1] != len(labels):
        raise ValueError(f"{probs.shape[1]} predictions per candidate but {len(labels)} labels")
    labels = labels.to(probs.device)
    # Each candidate's probability of the true class, summed in float64: candidates' mean NLLs differ in
    # their last digits, and the tie-break must not depend on float32 rounding.
    true_probs = probs.gather(2, labels.expand(len(probs), -1).unsqueeze(2)).squeeze(2).double()
    ensemble_sum = torch.zeros_like(probs[0])  # the chosen members' probabilities, summed
    ensemble_true = torch.zeros_like(true_probs[0])
    chosen: list[int] = []
    for round_ in range(1, size + 1):
        # Every candidate's addition at once (candidate x sample): the means differ from the sums by the
        # same factor 1/round_, which changes no argmax.
        nll = -(((ensemble_true + true_probs) / round_).clamp_min(MIN_PROB).log()).mean(1)
        if metric == "accuracy":
            correct = ((ensemble_sum + probs).argmax(2) == labels).sum(1)
            best = _first_min(nll, among=correct == correct.max())
        else:
            best = _first_min(nll)
        chosen.append(best)
        ensemble_sum += probs[best]
        ensemble_true += true_probs[best]
    return chosen


def _first_min(values: torch.Tensor, among: torch.Tensor | None = None) -> int:
    """The lowest index holding the minimum of `values` (of those `among` marks): ties go to the earlier
    candidate, on any device."""
    among = torch.ones_like(values, dtype=torch.bool) if among is None else among
    lowest = values[among].min()
    return int(torch.nonzero(among & (values == lowest))[0, 0])
