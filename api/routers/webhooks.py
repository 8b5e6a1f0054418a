"""A job's webhook deliveries: what was sent to its notify_url, and every attempt's answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import ConfigDict, Field

from api.auth import current_tenant
from api.deps import SessionDep, TenantDep
from api.limits import page_size
from api.pages import CursorQuery, Page, bad_cursor_as_422
from api.schemas import UtcModel
from store import jobs, webhooks
from store.states import DeliveryStatus
from store.tables import WebhookDelivery

router = APIRouter(prefix="/v1/jobs", tags=["webhooks"], dependencies=[Depends(current_tenant)])


class WebhookAttemptOut(UtcModel):
    model_config = ConfigDict(from_attributes=True)  # read straight off the WebhookAttempt row

    attempt: int
    at: datetime
    status_code: int | None = Field(description="the receiver's answer; null when none came")
    error: str | None = Field(description="why the attempt failed: a non-2xx code, a timeout, a refusal")
    duration_ms: float


class WebhookDeliveryOut(UtcModel):
    id: str = Field(description="sent as webhook-id: the same for every attempt, to deduplicate")
    event: str = Field(description="job.succeeded, job.failed or job.cancelled")
    url: str
    status: DeliveryStatus = Field(
        description="pending (more attempts to come), delivered or failed (gave up)"
    )
    attempts: int
    next_attempt_at: datetime | None = Field(description="when the next attempt is due, while pending")
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="the JSON body POSTed")
    history: list[WebhookAttemptOut] = Field(description="every attempt, oldest first")

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> WebhookDeliveryOut:
        return cls(
            id=delivery.id,
            event=delivery.event,
            url=delivery.url,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at if delivery.status == DeliveryStatus.PENDING else None,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
            delivered_at=delivery.delivered_at,
            payload=delivery.payload,
            history=[WebhookAttemptOut.model_validate(attempt) for attempt in delivery.history],
        )


class WebhookDeliveryPage(Page[WebhookDeliveryOut]):
    pass


@router.get("/{job_id}/webhooks", response_model=WebhookDeliveryPage)
def list_job_webhooks(
    job_id: str,
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, page_size(20)],
    cursor: CursorQuery = None,
) -> WebhookDeliveryPage:
    """The job's deliveries, oldest first, each with its attempts."""
    if jobs.get_job(session, job_id, tenant) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    with bad_cursor_as_422(cursor):
        page, next_cursor = webhooks.list_deliveries(session, job_id, limit=limit, cursor=cursor)
    return WebhookDeliveryPage(items=[WebhookDeliveryOut.of(d) for d in page], next_cursor=next_cursor)
