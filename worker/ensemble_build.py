"""Build an ensemble on a worker: load its members, average weights if asked, evaluate on the test split."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any

from models.datasets import load_splits
from models.ensemble import EnsemblePredictor, Member, check_members, evaluate_ensemble
from models.ensemble_selection import top_k
from store import ensembles, uploads
from store.artifacts import ensemble_key, save_weights
from store.db import session_scope
from store.objects import Artifact, artifact_store
from store.settings import get_settings
from store.states import EnsembleStatus
from store.tables import Run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOutcome:
    status: EnsembleStatus  # READY or FAILED
    evaluation: dict[str, Any] | None
    error: str | None


def ensemble_warnings(method: str, refs: list[dict[str, Any]]) -> list[str]:
    """What the evaluation should tell: averaging the weights of independently initialised networks."""
    runs = sorted({ref["run_id"] for ref in refs})
    if method != "weights" or len(runs) < 2:
        return []
    # Snapshots and averaged weights of one run lie near one minimum and average well; separate runs sit
    # in different basins with permuted units, and their mean is usually a broken network.
    return [
        f"the members come from {len(runs)} different training runs ({', '.join(runs)}): averaging the "
        "weights of independently initialised networks usually breaks them; use mean_probs or mean_logits "
        "for independent runs, or average snapshots (epoch) and averaged weights of one run"
    ]


def best_single(
    refs: list[dict[str, Any]], val_accs: dict[str, float | None], evaluation: dict[str, Any]
) -> dict[str, Any] | None:
    """For an ensemble of more than one run: the member best on the validation split (its run's stored
    val_acc, which is of the weights a plain run ref loads), with its test accuracy from `evaluation`
    beside the ensemble's. Chosen on validation: the best by test accuracy would flatter the single model.
    None for one run's snapshots, or when no member is a run's kept weights."""
    if len({ref["run_id"] for ref in refs}) < 2:
        return None
    scored = [
        (index, val_accs[ref["run_id"]])
        for index, ref in enumerate(refs)
        if ref.get("epoch") is None and not ref.get("averaged") and val_accs.get(ref["run_id"]) is not None
    ]
    if not scored:
        return None
    [best] = top_k([val_acc for _, val_acc in scored], 1, higher_is_better=True)  # ties: the first member
    member, val_acc = scored[best]
    accuracy = evaluation["member_accuracies"][member]
    return {
        "run_id": refs[member]["run_id"],
        "member": member,
        "val_acc": val_acc,
        "accuracy": accuracy,
        "gain": evaluation["ensemble_accuracy"] - accuracy,
    }


def build_ensemble(ensemble_id: str) -> BuildOutcome:
    """Evaluate (and for method weights, average) an ensemble once; a repeated call answers the outcome."""
    settings = get_settings()
    with session_scope() as session:
        ensemble = ensembles.get_ensemble(session, ensemble_id)
        if ensemble is None:
            return BuildOutcome(EnsembleStatus.FAILED, None, f"ensemble {ensemble_id} not found")
        if ensemble.status != EnsembleStatus.BUILDING:
            return BuildOutcome(ensemble.status, ensemble.evaluation, ensemble.error)
        method, refs = ensemble.method, ensemble.members
    store = artifact_store(settings)
    evaluation, weights, error = None, None, None
    try:
        with session_scope() as session:
            sources = ensembles.resolve_members(session, refs, store)
            val_accs = {
                ref["run_id"]: (session.get(Run, ref["run_id"]).metrics or {}).get("val_acc") for ref in refs
            }
        members = [Member(*source.load()) for source in sources]
        check_members(members, method)
        # Member 0's job defines the test split the ensemble is scored on (and the training inputs that
        # recompute batch-norm statistics of averaged weights).
        spec = members[0].meta["spec"]
        uploads.fetch_upload(spec["dataset"], settings)
        splits = load_splits(spec["dataset"], spec["model"], data_dir=settings.data_dir)
        train_batches = splits.batches(splits.train_raw[0], 256)
        # Built once: for `weights` this averages (and recomputes batch norm) once, for scoring and saving.
        predictor = EnsemblePredictor(members, method, train_batches=train_batches)
        evaluation = evaluate_ensemble(
            members, method, *splits.test_raw, predictor=predictor, inputs=splits.prepare
        )
        if single := best_single(refs, val_accs, evaluation):
            evaluation["best_single"] = single
        warnings = ensemble_warnings(method, refs)
        if warnings:
            evaluation["warnings"] = warnings
        if method == "weights":
            weights = Artifact(store, ensemble_key(ensemble_id))
            [averaged] = predictor.stack.modules
            # Copies: the predictor's modules hold views into its grouped network's stacked storage.
            state = {name: tensor.clone() for name, tensor in averaged.state_dict().items()}
            meta = members[0].meta | {"ensemble_id": ensemble_id, "method": method, "members": refs}
            save_weights(weights, state, meta)
    except Exception as exc:  # bad members or data: the ensemble fails with the reason
        log.error("ensemble %s failed:\n%s", ensemble_id, traceback.format_exc())
        error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    with session_scope() as session:
        ensembles.finish_ensemble(session, ensemble_id, evaluation=evaluation, weights=weights, error=error)
        ensemble = ensembles.get_ensemble(session, ensemble_id)
        return BuildOutcome(ensemble.status, ensemble.evaluation, ensemble.error)
