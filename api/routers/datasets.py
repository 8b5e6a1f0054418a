"""Uploaded datasets: upload an .npz of images and labels, list, read, delete them; jobs name them by id."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from api.auth import current_tenant
from api.body_limit import read_body
from api.deps import ResourcesDep, SessionDep, TenantDep
from api.field_errors import invalid
from api.limits import page_size
from api.pages import CursorQuery, Page, bad_cursor_as_422
from api.resources import ApiResources
from api.schemas import UtcModel
from models.uploads import UploadError, check_upload
from store import deletion, uploads
from store.tables import Dataset

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], dependencies=[Depends(current_tenant)])

NPZ_TYPES = ("application/octet-stream", "application/x-npz")
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The .npz file itself (np.savez or np.savez_compressed): x as N×C×H×W or N×H×W "
        "(uint8, float32 or float64) and y, N integer labels 0..K-1.",
        "content": {kind: {"schema": {"type": "string", "format": "binary"}} for kind in NPZ_TYPES},
    }
}


class DatasetOut(UtcModel):
    id: str = Field(description='name it in a job as {"name": "upload", "id": ...}')
    name: str
    n: int = Field(description="samples")
    input_shape: list[int] = Field(description="C, H, W of one sample")
    num_classes: int
    bytes: int = Field(description="size of the .npz as uploaded")
    sha256: str = Field(description="of the .npz as uploaded")
    created_at: datetime

    @classmethod
    def of(cls, dataset: Dataset) -> DatasetOut:
        return cls.model_validate(dataset, from_attributes=True)


class DatasetPage(Page[DatasetOut]):
    pass


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetOut, openapi_extra=UPLOAD_BODY)
async def upload_dataset(
    request: Request,
    resources: ResourcesDep,
    tenant: TenantDep,
    name: str = Query(min_length=1, max_length=120, pattern=r"^[^\x00-\x1f\x7f]+$", description="a label"),
) -> DatasetOut:
    """Check the archive (entries, sizes, headers, then values) and keep it for the tenant's jobs."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type not in NPZ_TYPES:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"send the .npz as {' or '.join(NPZ_TYPES)}"
        )
    body = await read_body(request, resources.settings.max_upload_bytes)
    # Checking and saving take CPU and disk time: off the event loop.
    return await run_in_threadpool(_store, resources, body, name, tenant)


def _store(resources: ApiResources, body: bytes, name: str, tenant: str) -> DatasetOut:
    settings = resources.settings
    try:
        upload = check_upload(body, settings.max_upload_inflated_bytes)
    except UploadError as exc:
        if exc.status == status.HTTP_422_UNPROCESSABLE_CONTENT:
            raise invalid(("body", *exc.loc), exc.message) from exc
        raise HTTPException(exc.status, exc.message) from exc
    with resources.sessions() as session:
        dataset = uploads.create_dataset(
            session, upload, body=body, name=name, tenant=tenant, store=resources.store
        )
        session.commit()
        return DatasetOut.of(dataset)


@router.get("", response_model=DatasetPage)
def list_datasets(
    session: SessionDep, tenant: TenantDep, limit: Annotated[int, page_size(20)], cursor: CursorQuery = None
) -> DatasetPage:
    """The tenant's uploads, newest first."""
    with bad_cursor_as_422(cursor):
        page, next_cursor = uploads.list_datasets(session, tenant=tenant, limit=limit, cursor=cursor)
    return DatasetPage(items=[DatasetOut.of(dataset) for dataset in page], next_cursor=next_cursor)


@router.get("/{dataset_id}", response_model=DatasetOut)
def read_dataset(dataset_id: str, session: SessionDep, tenant: TenantDep) -> DatasetOut:
    dataset = uploads.get_dataset(session, dataset_id, tenant)
    if dataset is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"dataset {dataset_id} not found")
    return DatasetOut.of(dataset)


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_dataset(
    dataset_id: str, session: SessionDep, resources: ResourcesDep, tenant: TenantDep
) -> Response:
    """Delete the dataset and its file (finished jobs trained on it stay); 409 while a queued or running
    job uses it."""
    dataset = uploads.get_dataset(session, dataset_id, tenant)
    if dataset is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"dataset {dataset_id} not found")
    try:
        removal = deletion.delete_dataset(session, dataset, resources.settings)
    except deletion.Refused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from exc
    session.commit()
    removal.finish()  # the file after the row: a crash between leaves only an orphan file
    return Response(status_code=status.HTTP_204_NO_CONTENT)
