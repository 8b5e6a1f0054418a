"""Ensembles of stored runs: their rows, and where each member's weights are read from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.spec import SpecError
from store.artifacts import load_checkpoint_model, load_weights, read_meta, read_shapes
from store.objects import Artifact, ArtifactStore
from store.states import EnsembleStatus
from store.tables import Checkpoint, Ensemble, Run, new_id, utcnow


@dataclass(frozen=True)
class MemberSource:
    """Where one member's tensors are, and the run's weights file whose metadata rebuilds the model.

    A member is a run's final weights, its averaged (Polyak/EMA) weights, or a snapshot: its checkpoint
    after a given epoch. All three share the run's metadata (spec, input shape, classes, normalisation).
    """

    ref: dict[str, Any]  # {"run_id", "epoch", "averaged"} as stored with the ensemble
    tensors: Artifact
    meta_from: Artifact
    snapshot: bool

    def meta(self) -> dict[str, Any]:
        return read_meta(self.meta_from) | {"source": self.ref}

    def shapes(self) -> dict[str, torch.Tensor]:
        """The tensors as meta-device stand-ins (shapes and dtypes), read from the file's header alone."""
        return read_shapes(self.tensors, "model." if self.snapshot else "")

    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if self.snapshot:
            return load_checkpoint_model(self.tensors), self.meta()
        state_dict, _ = load_weights(self.tensors)
        return state_dict, self.meta()


def member_ref(run_id: str, epoch: int | None = None, averaged: bool = False) -> dict[str, Any]:
    return {"run_id": run_id, "epoch": epoch, "averaged": averaged}


def resolve_members(
    session: Session, refs: list[dict[str, Any]], store: ArtifactStore, tenant: str | None = None
) -> list[MemberSource]:
    """Each reference's objects in `store`; a SpecError at ("members", i) for what does not exist, is not
    kept, or (with `tenant`) is another tenant's."""
    sources = []
    for index, ref in enumerate(refs):
        loc = ("members", index)
        run = session.get(Run, ref["run_id"])
        if run is None or (tenant is not None and run.job.tenant != tenant):
            raise SpecError(loc, f"run {ref['run_id']} not found")
        meta_from = store.at(run.weights_path)
        if ref.get("averaged"):
            if ref.get("epoch") is not None:
                raise SpecError(loc, "a member is either a snapshot (epoch) or averaged weights, not both")
            if not run.averaged_weights_path:
                raise SpecError(loc, f"run {run.id} has no averaged weights (its param_averaging was none)")
            averaged = store.at(run.averaged_weights_path)
            sources.append(MemberSource(ref, averaged, meta_from, snapshot=False))
        elif ref.get("epoch") is not None:
            snapshot = _snapshot(session, run, ref["epoch"], loc, store)
            sources.append(MemberSource(ref, snapshot, meta_from, snapshot=True))
        else:
            sources.append(MemberSource(ref, meta_from, meta_from, snapshot=False))
    return sources


def _snapshot(session: Session, run: Run, epoch: int, loc: tuple, store: ArtifactStore) -> Artifact:
    checkpoints = session.scalars(
        select(Checkpoint).where(Checkpoint.job_id == run.job_id).order_by(Checkpoint.id.desc())
    ).all()
    for checkpoint in checkpoints:
        if checkpoint.epoch == epoch and store.at(checkpoint.path).exists():
            return store.at(checkpoint.path)
    kept = sorted({c.epoch for c in checkpoints})
    raise SpecError(
        loc,
        f"run {run.id} has no checkpoint after epoch {epoch}; kept: {kept or 'none'} "
        "(TRAINYARD_KEEP_CHECKPOINTS sets how many recent epochs are kept)",
    )


def create_ensemble(
    session: Session,
    *,
    name: str,
    method: str,
    refs: list[dict[str, Any]],
    job_id: str | None = None,
    ensemble_id: str | None = None,
    tenant: str = "default",
) -> Ensemble:
    ensemble = Ensemble(
        id=ensemble_id or new_id(),
        name=name,
        method=method,
        members=refs,
        job_id=job_id,
        status=EnsembleStatus.BUILDING,
        tenant=tenant,
    )
    session.add(ensemble)
    session.flush()
    return ensemble


def get_ensemble(session: Session, ensemble_id: str, tenant: str | None = None) -> Ensemble | None:
    """The ensemble; None also when `tenant` is given and it is another tenant's."""
    ensemble = session.get(Ensemble, ensemble_id)
    return ensemble if ensemble is not None and (tenant is None or ensemble.tenant == tenant) else None


def of_job(session: Session, job_id: str) -> Ensemble | None:
    return session.scalar(select(Ensemble).where(Ensemble.job_id == job_id).limit(1))


def finish_ensemble(
    session: Session,
    ensemble_id: str,
    *,
    evaluation: dict[str, Any] | None = None,
    weights: Artifact | None = None,
    error: str | None = None,
) -> bool:
    """Building ends once: ready with its evaluation, or failed with the reason."""
    result = session.execute(
        update(Ensemble)
        .where(Ensemble.id == ensemble_id, Ensemble.status == EnsembleStatus.BUILDING)
        .values(
            status=EnsembleStatus.FAILED if error else EnsembleStatus.READY,
            evaluation=evaluation,
            weights_path=weights.key if weights else None,
            error=error,
            finished_at=utcnow(),
        )
    )
    return result.rowcount == 1
