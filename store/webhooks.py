"""Webhook deliveries: the rows written when a job ends, their payload, and the claim of each attempt.

An outbox: the delivery row is inserted in the transaction that ends its job, so a notification is never
lost (the job ended, so the row exists) nor invented (the transaction rolled back, and the row with it).
Once that transaction commits, the delivery is sent to the broker for an attempt at once; every worker's
recovery loop also sends whatever is due (retries, lost messages), and each attempt is claimed by a
compare-and-set on `attempts`, so two senders never make the same attempt. Each attempt is signed with
the secrets of the job's tenant (store/webhook_secrets.py) as they are when it is claimed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import Session, selectinload

from store import pages, webhook_secrets
from store.db import PRODUCER_INFO
from store.queue import enqueue_webhook
from store.states import TERMINAL, DeliveryStatus, JobKind
from store.tables import Ensemble, Job, Run, WebhookAttempt, WebhookDelivery, utcnow

log = logging.getLogger(__name__)

# session.info key: deliveries created in the session's transaction, to send once it has committed.
_TO_SEND = "trainyard.webhooks.to_send"


@dataclass(frozen=True)
class Attempt:
    """One claimed attempt at a delivery: everything the sender needs, no ORM object."""

    delivery_id: str
    number: int  # 1 for the first attempt
    url: str
    event: str
    payload: dict[str, Any]
    secrets: tuple[str, ...]  # the job's tenant's signing secrets, newest first: each signs


def _iso(moment: datetime | None) -> str | None:
    # SQLite hands datetimes back without their zone; everything stored is UTC.
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


def job_summary(session: Session, job: Job) -> dict[str, Any]:
    """The job as a receiver sees it: outcome, metrics, trained models (an ensemble job's: its members')."""
    runs = session.scalars(
        select(Run)
        .join(Job, Run.job_id == Job.id)
        .where(or_(Job.id == job.id, Job.parent_id == job.id))
        .order_by(Run.member)
    )
    summary = {
        "id": job.id,
        "name": job.name,
        "kind": job.kind,
        "status": job.status,
        "metrics": job.metrics,
        "error": job.error,
        "attempts": job.attempts,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "runs": [{"id": run.id, "member": run.member, "test_acc": run.test_acc} for run in runs],
    }
    if job.kind == JobKind.ENSEMBLE:
        summary["ensemble_id"] = session.scalar(select(Ensemble.id).where(Ensemble.job_id == job.id).limit(1))
    return summary


def job_ended(session: Session, job_id: str) -> WebhookDelivery | None:
    """In the transaction that has just ended a job: its delivery, if it asked for one (members never do)."""
    session.flush()  # the job's new state and its runs, as this transaction wrote them
    job = session.get(Job, job_id, populate_existing=True)
    url = job.spec.get("notify_url") if job is not None else None
    if job is None or not url or job.parent_id is not None or job.status not in TERMINAL:
        return None
    event_name = f"job.{job.status}"
    delivery = WebhookDelivery(
        job_id=job.id,
        url=url,
        event=event_name,
        payload={"event": event_name, "job": job_summary(session, job)},
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(delivery)
    session.flush()
    session.info.setdefault(_TO_SEND, []).append(delivery.id)
    return delivery


@event.listens_for(Session, "after_commit")
def _send_committed(session: Session) -> None:
    # Here rather than at each place that ends a job: whatever commits a delivery sends it, and only then.
    for delivery_id in session.info.pop(_TO_SEND, ()):
        try:
            enqueue_webhook(delivery_id, celery=session.info.get(PRODUCER_INFO))
        except Exception:  # the broker is away: the recovery loops send it once it is due
            log.warning("webhook delivery %s: not sent to the broker; a recovery loop will", delivery_id)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_TO_SEND, None)


def due_deliveries(session: Session, limit: int, now: datetime | None = None) -> list[str]:
    """Pending deliveries whose next attempt is due, longest waiting first."""
    query = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= (now or utcnow()),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def claim_attempt(
    session: Session, delivery_id: str, *, max_attempts: int, lease_s: float, now: datetime | None = None
) -> Attempt | None:
    """Take the next attempt of a due delivery; None when it is not due, has ended, or another sender won.

    The claim moves `next_attempt_at` a lease ahead: should this sender die before recording the outcome,
    the attempt counts as made and the delivery is due again once the lease has passed.
    """
    now = now or utcnow()
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    due_at = delivery.next_attempt_at
    if (due_at if due_at.tzinfo else due_at.replace(tzinfo=timezone.utc)) > now:
        return None
    seen = delivery.attempts
    same_attempt = (WebhookDelivery.id == delivery_id, WebhookDelivery.status == DeliveryStatus.PENDING)
    if seen >= max_attempts:  # the sender of the last attempt died before it could record the outcome
        session.execute(
            update(WebhookDelivery)
            .where(*same_attempt, WebhookDelivery.attempts == seen)
            .values(status=DeliveryStatus.FAILED, last_error="the sender of the last attempt was lost")
        )
        return None
    tenant = session.scalar(select(Job.tenant).where(Job.id == delivery.job_id))
    secrets = tuple(webhook_secrets.signing_secrets(session, tenant, now))
    attempt = Attempt(delivery_id, seen + 1, delivery.url, delivery.event, delivery.payload, secrets)
    claimed = session.execute(
        update(WebhookDelivery)
        .where(*same_attempt, WebhookDelivery.attempts == seen)
        .values(attempts=seen + 1, next_attempt_at=now + timedelta(seconds=lease_s))
    )
    return attempt if claimed.rowcount == 1 else None


def record_attempt(
    session: Session,
    attempt: Attempt,
    *,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    max_attempts: int,
    retry_in_s: float,
) -> DeliveryStatus:
    """Store what the receiver answered and what follows: delivered, failed, or a retry after `retry_in_s`."""
    now = utcnow()
    session.add(
        WebhookAttempt(
            delivery_id=attempt.delivery_id,
            attempt=attempt.number,
            at=now,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
        )
    )
    pending = (WebhookDelivery.id == attempt.delivery_id, WebhookDelivery.status == DeliveryStatus.PENDING)
    outcome = {"last_status_code": status_code, "last_error": error}
    if status_code is not None and 200 <= status_code < 300:
        # Delivered even if a later attempt has been claimed meanwhile (this one outlived its lease).
        delivered = {"status": DeliveryStatus.DELIVERED, "delivered_at": now}
        session.execute(update(WebhookDelivery).where(*pending).values(**delivered, **outcome))
        return DeliveryStatus.DELIVERED
    if attempt.number >= max_attempts:
        status, values = DeliveryStatus.FAILED, {"status": DeliveryStatus.FAILED}
    else:
        status, values = DeliveryStatus.PENDING, {"next_attempt_at": now + timedelta(seconds=retry_in_s)}
    # Only while no later attempt has been claimed: that one's outcome is newer than this one's.
    session.execute(
        update(WebhookDelivery)
        .where(*pending, WebhookDelivery.attempts == attempt.number)
        .values(**values, **outcome)
    )
    return status


# Oldest first, as the deliveries happened.
DELIVERY_ORDER = pages.Sort("created_at", (WebhookDelivery.created_at, WebhookDelivery.id), descending=False)


def list_deliveries(
    session: Session, job_id: str, *, limit: int, cursor: str | None
) -> tuple[list[WebhookDelivery], str | None]:
    """A job's deliveries with their attempts, oldest first, and the next page's cursor (one job's cursor
    pages no other job's); ValueError on a bad cursor."""
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id)
        .options(selectinload(WebhookDelivery.history))
    )
    listing = f"the webhooks of job {job_id}"
    return pages.page(session, query, listing=listing, sort=DELIVERY_ORDER, limit=limit, cursor=cursor)
