"""Uploaded datasets: the checked file under the data directory and its row, per tenant."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.spec import SpecError
from models.uploads import CheckedUpload, save_checked, stored_path
from store import pages
from store.tables import Dataset, new_id


def create_dataset(
    session: Session, upload: CheckedUpload, *, body: bytes, name: str, tenant: str, data_dir: Path
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
    save_checked(upload, stored_path(data_dir, dataset.id))
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
