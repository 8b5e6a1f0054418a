"""Uploaded datasets: the checked file in the artifact store and its row, per tenant.

Training reads an upload from the data directory (models/datasets.py): each host keeps its copy there,
fetched from the store on first use (fetch_upload). An upload never changes once stored, so a copy named
by its id is good for ever; a local store's copy is a hard link where it can be, no second file.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.spec import SpecError
from models.uploads import CheckedUpload, save_checked, stored_path
from store import pages
from store.objects import Artifact, ArtifactStore, artifact_store
from store.settings import Settings
from store.tables import Dataset, new_id


def upload_key(dataset_id: str) -> str:
    return f"uploads/{dataset_id}.npz"


def create_dataset(
    session: Session, upload: CheckedUpload, *, body: bytes, name: str, tenant: str, store: ArtifactStore
) -> Dataset:
    """Store the checked arrays, then their row (the caller commits); size and hash are of `body`."""
    dataset = Dataset(
        id=new_id(),
        tenant=tenant,
        name=name,
        n=upload.n,
        input_shape=list(upload.input_shape),
        num_classes=upload.num_classes,
        bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    with store.writing(upload_key(dataset.id)) as path:
        save_checked(upload, path)
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, dataset_id: str, tenant: str) -> Dataset | None:
    """The tenant's dataset; another tenant's is as unknown as one that never was."""
    dataset = session.get(Dataset, dataset_id)
    return dataset if dataset is not None and dataset.tenant == tenant else None


DATASET_ORDER = pages.Sort("created_at", (Dataset.created_at, Dataset.id))


def list_datasets(
    session: Session, *, tenant: str, limit: int, cursor: str | None
) -> tuple[list[Dataset], str | None]:
    """The tenant's datasets newest first, and the next page's cursor; ValueError on a bad cursor."""
    query = select(Dataset).where(Dataset.tenant == tenant)
    return pages.page(session, query, listing="datasets", sort=DATASET_ORDER, limit=limit, cursor=cursor)


def check_dataset_access(session: Session, dataset: BaseModel, tenant: str) -> None:
    """A SpecError at ("dataset", "id") when a job names an upload the tenant does not have."""
    if dataset.name == "upload" and get_dataset(session, dataset.id, tenant) is None:
        raise SpecError(("dataset", "id"), f"no uploaded dataset {dataset.id}")


def fetch_upload(dataset: BaseModel | dict, settings: Settings) -> None:
    """Make an uploaded dataset's file readable from this host's data directory, fetched from the store
    unless a copy is there already; nothing for other datasets. A missing upload is left for the reader
    to refuse with its message."""
    fields = dataset if isinstance(dataset, dict) else dataset.model_dump()
    if fields.get("name") != "upload":
        return
    copy = stored_path(settings.data_dir, fields["id"])
    if copy.is_file():
        return
    try:
        artifact_store(settings).download(upload_key(fields["id"]), copy)
    except FileNotFoundError:
        pass


def upload_files(dataset_id: str, settings: Settings) -> list[Artifact]:
    """Where an upload lies: in the store, and this host's copy (other hosts' copies stay, unread)."""
    copy = Artifact.file(stored_path(settings.data_dir, dataset_id))
    return [Artifact(artifact_store(settings), upload_key(dataset_id)), copy]
