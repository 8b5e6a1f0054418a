"""models.ensemble_selection on hand-made probabilities: what greedy selection and top_k choose, and why."""

import pytest
import torch

from models.ensemble_selection import greedy_selection, top_k

LABELS = torch.tensor([0, 1, 2, 0])


def confident(predicted: list[int], p: float = 0.8, classes: int = 3) -> torch.Tensor:
    """Probabilities (N x classes) putting `p` on each sample's predicted class, the rest spread evenly."""
    probs = torch.full((len(predicted), classes), (1 - p) / (classes - 1))
    probs[torch.arange(len(predicted)), torch.tensor(predicted)] = p
    return probs


def test_the_first_pick_is_the_best_single_candidate_and_a_repeat_when_nothing_adds_more():
    wrong_twice = confident([0, 1, 1, 1])
    right = confident([0, 1, 2, 0])
    wrong_once = confident([0, 1, 2, 1])
    assert greedy_selection([wrong_twice, right, wrong_once], LABELS, size=3) == [1, 1, 1]


def reference_selection(probs: list[torch.Tensor], labels: torch.Tensor, size: int, metric: str) -> list[int]:
    """The paper's loop as written: each round, every candidate's ensemble scored on its own, in float64."""
    chosen: list[int] = []
    for _ in range(size):
        scores = []
        for candidate in range(len(probs)):
            mean = torch.stack([probs[i].double() for i in [*chosen, candidate]]).mean(0)
            correct = int((mean.argmax(1) == labels).sum())
            nll = -mean[torch.arange(len(labels)), labels].clamp_min(1e-12).log().mean().item()
            scores.append(((-correct, nll) if metric == "accuracy" else (nll,), candidate))
        chosen.append(min(scores)[1])
    return chosen


@pytest.mark.parametrize("metric", ["accuracy", "nll"])
def test_greedy_selection_chooses_what_the_papers_loop_chooses(metric):
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (60,), generator=generator)
    # Members of mixed skill and confidence: each right with a chance of its own, at a temperature of its own.
    probs = []
    for skill, temperature in [(0.5, 1.0), (0.6, 0.3), (0.4, 2.0), (0.55, 0.7), (0.3, 0.5), (0.6, 1.5)]:
        logits = torch.randn(60, 5, generator=generator)
        right = torch.rand(60, generator=generator) < skill
        logits[right, labels[right]] += 2.0
        probs.append((logits / temperature).softmax(1))
    chosen = greedy_selection(probs, labels, size=8, metric=metric)
    assert chosen == reference_selection(probs, labels, size=8, metric=metric)
    assert len(set(chosen)) < len(chosen)  # with replacement: here some member is chosen again


def test_the_nll_metric_prefers_calibrated_to_overconfident():
    overconfident = confident([0, 1, 2, 1], p=0.999999)  # right on 3, ~0 on the true class of the 4th
    calibrated = confident([0, 1, 1, 1], p=0.6)  # right on 2, never far off
    assert greedy_selection([overconfident, calibrated], LABELS, size=1, metric="accuracy") == [0]
    assert greedy_selection([overconfident, calibrated], LABELS, size=1, metric="nll") == [1]


def test_candidates_surely_wrong_are_ranked_by_how_often():
    # Each puts probability 0 on some true class: unclamped, both would be infinitely bad and tie.
    twice = confident([1, 1, 2, 1], p=1.0)
    once = confident([0, 1, 2, 1], p=1.0)
    assert greedy_selection([twice, once], LABELS, size=1, metric="nll") == [1]


def test_greedy_refuses_what_it_cannot_select():
    with pytest.raises(ValueError, match="size"):
        greedy_selection([confident([0, 1, 2, 0])], LABELS, size=0)
    with pytest.raises(ValueError, match="labels"):
        greedy_selection([confident([0, 1, 2])], LABELS, size=1)


def test_top_k_ranks_either_way_with_ties_in_index_order():
    assert top_k([0.5, 0.9, 0.9, 0.1], 3, higher_is_better=True) == [1, 2, 0]
    assert top_k([0.5, 0.9, 0.9, 0.1], 2, higher_is_better=False) == [3, 0]
    with pytest.raises(ValueError, match="between 1 and the 4"):
        top_k([0.5, 0.9, 0.9, 0.1], 5, higher_is_better=True)
    with pytest.raises(ValueError, match="NaN"):
        top_k([0.5, float("nan")], 1, higher_is_better=True)
