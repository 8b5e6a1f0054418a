"""The webhook outbox: a delivery is written with the end of a job that asked for one, and each attempt
is made by one sender only."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from store import jobs, webhook_secrets, webhooks
from store.tables import Job, WebhookAttempt, WebhookDelivery, utcnow
from tests.factories import job_spec

URL = "http://127.0.0.1:9/hook"


def _job(session: Session, **spec) -> Job:
    job = jobs.create_job(session, job_spec(**spec), summary={})
    session.flush()
    return job


def _delivery(engine) -> str:
    with Session(engine) as session, session.begin():
        job = _job(session, notify_url=URL)
        delivery = WebhookDelivery(job_id=job.id, url=URL, event="job.succeeded", payload={"event": "x"})
        session.add(delivery)
        session.flush()
        return delivery.id


def _claim(session: Session, delivery_id: str, now=None) -> webhooks.Attempt | None:
    return webhooks.claim_attempt(session, delivery_id, max_attempts=3, lease_s=60, now=now)


def _record(session: Session, attempt: webhooks.Attempt, status_code: int | None) -> str:
    return webhooks.record_attempt(
        session,
        attempt,
        status_code=status_code,
        error=None if status_code == 200 else "HTTP 500",
        duration_ms=1.0,
        max_attempts=3,
        retry_in_s=0.0,
    )


def test_cancelling_an_ensemble_job_notifies_for_it_and_not_for_its_members(engine):
    # The transaction is rolled back, never committed: nothing is sent to a broker.
    with Session(engine) as session, session.begin():
        parent = _job(session, notify_url=URL, ensemble={"members": 2})
        silent = _job(session)
        members = [child.id for child in jobs.member_jobs(session, parent.id)]
        jobs.cancel_jobs(session, [parent.id, *members, silent.id])
        ended = [parent.id, *members, silent.id]
        [delivery] = session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id.in_(ended))).all()
        assert delivery.job_id == parent.id
        assert delivery.url == URL
        assert delivery.event == "job.cancelled"
        assert delivery.payload["job"]["status"] == "cancelled"
        assert delivery.payload["job"]["ensemble_id"] is None
        assert delivery.payload["job"]["finished_at"] is not None
        session.rollback()


def test_two_senders_never_make_the_same_attempt(engine):
    delivery_id = _delivery(engine)
    with Session(engine) as late, Session(engine) as early:
        # Read before the other sender claims it (and held, so that the claim goes by this stale read).
        stale = late.get(WebhookDelivery, delivery_id)
        with early.begin():
            first = _claim(early, delivery_id)
        assert _claim(late, delivery_id) is None
        late.commit()
    assert first is not None and first.number == 1
    assert stale is not None

    with Session(engine) as session, session.begin():
        assert _claim(session, delivery_id) is None  # claimed: not due again until its lease has passed
        again = _claim(session, delivery_id, now=utcnow() + timedelta(seconds=61))
    assert again is not None and again.number == 2  # its sender was lost: the next attempt is due


def test_a_failed_attempt_is_retried_and_a_2xx_delivers(engine):
    delivery_id = _delivery(engine)
    with Session(engine) as session, session.begin():
        assert _record(session, _claim(session, delivery_id), 500) == "pending"
    with Session(engine) as session, session.begin():
        assert _record(session, _claim(session, delivery_id), 200) == "delivered"
    with Session(engine) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 200)
        attempts = select(WebhookAttempt.status_code).where(WebhookAttempt.delivery_id == delivery_id)
        codes = session.scalars(attempts.order_by(WebhookAttempt.attempt)).all()
        assert codes == [500, 200]
        assert _claim(session, delivery_id) is None


def test_after_the_last_attempt_the_delivery_has_failed(engine):
    delivery_id = _delivery(engine)
    for _ in range(3):
        with Session(engine) as session, session.begin():
            _record(session, _claim(session, delivery_id), 500)
    with Session(engine) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 3, "HTTP 500")
        assert delivery_id not in webhooks.due_deliveries(session, limit=1000)


def test_a_late_failure_does_not_overwrite_a_newer_attempt(engine):
    delivery_id = _delivery(engine)
    with Session(engine) as session, session.begin():
        slow = _claim(session, delivery_id)
    with Session(engine) as session, session.begin():
        newer = _claim(session, delivery_id, now=utcnow() + timedelta(seconds=61))  # slow outlived its lease
        _record(session, newer, 200)
    with Session(engine) as session, session.begin():
        _record(session, slow, 500)
    with Session(engine) as session:
        assert session.get(WebhookDelivery, delivery_id).status == "delivered"


def test_an_attempt_is_signed_with_the_secrets_of_its_jobs_tenant(engine):
    delivery_id = _delivery(engine)  # a job of tenant "default"
    with Session(engine) as session, session.begin():
        attempt = _claim(session, delivery_id)
        assert list(attempt.secrets) == webhook_secrets.signing_secrets(session, "default")
        assert attempt.secrets and attempt.secrets != tuple(webhook_secrets.signing_secrets(session, "other"))
