"""Whether a job's spec may run for its tenant: every check a submitted job passes before it is stored.

The API runs them on a submitted job (a failure is its 422), and a sweep on each point it samples (a
failure is the trial's refusal), so that a trial is exactly as admissible as the same job sent by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from models.cnn import ModelSummary, inspect_model
from models.datasets import data_bytes, ensure_available
from models.spec import JobSpec
from store import egress, uploads
from store.settings import Settings


def field_error(loc: tuple, message: str, value: Any = None, kind: str = "value_error") -> dict[str, Any]:
    """One error as FastAPI reports a field's: `loc` path, `msg`, `input`."""
    return {"type": kind, "loc": loc, "msg": message, "input": value}


def over_limit(
    loc: tuple, value: int, limit: int, setting: str, what: str, part: str = "body"
) -> dict[str, Any]:
    """One error as FastAPI reports a field over its `le` bound, naming the setting that set it."""
    message = f"{what} is {value:,}; at most {limit:,} ({setting})"
    return field_error((part, *loc), message, value, kind="less_than_equal") | {
        "ctx": {"le": limit, "setting": setting}
    }



@dataclass(frozen=True)
class Vetted:
    summary: ModelSummary  # the network's size and shapes, built on the meta device
    errors: list[dict[str, Any]]  # the limits it exceeds, as 422 errors; empty: it may run


def vet_spec(session: Session, spec: JobSpec, tenant: str, settings: Settings) -> Vetted:
    """The spec's network summary and the limits it exceeds; raises SpecError (or DatasetUnavailable, a
    SpecError) for a spec that cannot run at all."""
    uploads.check_dataset_access(session, spec.dataset, tenant)  # before its file is read
    uploads.fetch_upload(spec.dataset, settings)  # uploaded through another API host, perhaps
    summary = inspect_model(spec, settings.data_dir)
    ensure_available(spec.dataset, settings.data_dir)
    errors = (
        job_limit_errors(spec, summary, settings)
        + dataset_memory_errors(spec, settings)  # an upload's header is read: may raise SpecError too
        + notify_url_errors(spec, settings)
    )
    return Vetted(summary, errors)


def job_limit_errors(spec: JobSpec, summary: ModelSummary, settings: Settings) -> list[dict[str, Any]]:
    """Every limit the job exceeds, as 422 errors; the network's size as built on the meta device."""
    members = spec.ensemble.members
    checks = [
        (("training", "epochs"), spec.training.epochs, settings.max_epochs, "max_epochs", "epochs"),
        (
            ("training", "batch_size"),
            spec.training.batch_size,
            settings.max_batch_size,
            "max_batch_size",
            "the batch size",
        ),
        (("ensemble", "members"), members, settings.max_members, "max_members", "the number of members"),
        (("model",), summary.params, settings.max_params, "max_params", "the parameter count"),
        (
            ("model",),
            summary.flops_per_sample,
            settings.max_flops,
            "max_flops",
            "the FLOPs per sample (forward pass)",
        ),
    ]
    return [over_limit(*check) for check in checks if check[1] > check[2]]


def dataset_memory_errors(spec: JobSpec, settings: Settings) -> list[dict[str, Any]]:
    """A dataset whose images would not fit a training process's memory (max_dataset_bytes), as a 422.

    The bytes are those the worker holds (models.datasets.data_bytes), counted from the specs and the
    known dataset sizes: nothing is loaded, so a million-image job is refused as fast as a small one.
    """
    needed = data_bytes(spec.dataset, spec.model, settings.data_dir)
    if needed <= settings.max_dataset_bytes:
        return []
    what = "the memory its images take in a training process, in bytes,"
    return [over_limit(("dataset",), needed, settings.max_dataset_bytes, "max_dataset_bytes", what)]


def notify_url_errors(spec: JobSpec, settings: Settings) -> list[dict[str, Any]]:
    """A notify_url the worker may not POST to (a private address: store/egress.py), as a 422."""
    url = str(spec.notify_url) if spec.notify_url else None
    refused = url and egress.refusal(url, allow_private=settings.webhook_allow_private, resolve=False)
    if not refused:
        return []
    return [field_error(("body", "notify_url"), refused, url)]
