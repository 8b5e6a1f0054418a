"""Each tenant's webhook secrets: made with its first key, rotated with a grace period in which the old
and the new secret both sign, and after which only the new one does."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session
from standardwebhooks import Webhook, WebhookVerificationError

from store import keys, webhook_secrets
from store.tables import utcnow
from store.webhooks import Attempt
from worker.webhooks import signed_headers

PAYLOAD = {"event": "job.succeeded", "job": {"id": "abc"}}
BODY = b'{"event":"job.succeeded","job":{"id":"abc"}}'


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def delivery_signed_with(secrets: list[str]) -> dict[str, str]:
    """The headers of a delivery signed as the sender signs it, with `secrets`."""
    attempt = Attempt("f" * 32, 1, "https://example.com/hook", "job.succeeded", PAYLOAD, tuple(secrets))
    return signed_headers(attempt, BODY, int(time.time()))


def verifies(secret: str, headers: dict[str, str]) -> bool:
    try:
        return Webhook(secret).verify(BODY, headers) == PAYLOAD
    except WebhookVerificationError:
        return False


def test_the_first_key_of_a_tenant_comes_with_its_secret_and_later_keys_do_not(engine, tenant):
    with Session(engine) as session, session.begin():
        first = keys.issue_key(session, tenant)
        second = keys.issue_key(session, tenant)
    assert first.webhook_secret is not None and first.webhook_secret.startswith("whsec_")
    assert second.webhook_secret is None
    with Session(engine) as session, session.begin():
        assert webhook_secrets.signing_secrets(session, tenant) == [first.webhook_secret]


def test_tenants_sign_with_their_own_secrets(engine, tenant):
    with Session(engine) as session, session.begin():
        mine = keys.issue_key(session, tenant).webhook_secret
        theirs = keys.issue_key(session, tenant + "-b").webhook_secret
        headers = delivery_signed_with(webhook_secrets.signing_secrets(session, tenant + "-b"))
    assert verifies(theirs, headers)
    assert not verifies(mine, headers)


def test_during_the_grace_period_old_and_new_secret_both_sign(engine, tenant):
    with Session(engine) as session, session.begin():
        old = keys.issue_key(session, tenant).webhook_secret
        rotated = webhook_secrets.rotate(session, tenant, grace_s=3600)
        headers = delivery_signed_with(webhook_secrets.signing_secrets(session, tenant))
        [current, previous] = webhook_secrets.secrets_of(session, tenant)
    assert rotated.secret != old
    assert verifies(rotated.secret, headers) and verifies(old, headers)
    assert current.expires_at is None
    assert previous.expires_at == rotated.previous_expires_at
    assert (
        timedelta(seconds=3590) < rotated.previous_expires_at - rotated.created_at <= timedelta(seconds=3600)
    )


def test_after_the_grace_period_only_the_new_secret_signs(engine, tenant):
    with Session(engine) as session, session.begin():
        old = keys.issue_key(session, tenant).webhook_secret
        rotated = webhook_secrets.rotate(session, tenant, grace_s=60)
        later = utcnow() + timedelta(seconds=61)
        headers = delivery_signed_with(webhook_secrets.signing_secrets(session, tenant, now=later))
        assert len(webhook_secrets.secrets_of(session, tenant, now=later)) == 1
    assert verifies(rotated.secret, headers)
    assert not verifies(old, headers)


def test_with_no_grace_period_the_old_secret_stops_at_once(engine, tenant):
    with Session(engine) as session, session.begin():
        old = keys.issue_key(session, tenant).webhook_secret
        rotated = webhook_secrets.rotate(session, tenant, grace_s=0)
        headers = delivery_signed_with(webhook_secrets.signing_secrets(session, tenant))
    assert verifies(rotated.secret, headers)
    assert not verifies(old, headers)


def test_rotating_twice_keeps_the_first_grace_period_of_the_oldest(engine, tenant):
    with Session(engine) as session, session.begin():
        oldest = keys.issue_key(session, tenant).webhook_secret
        first = webhook_secrets.rotate(session, tenant, grace_s=60)
        second = webhook_secrets.rotate(session, tenant, grace_s=3600)
        headers = delivery_signed_with(webhook_secrets.signing_secrets(session, tenant))
        expiries = [info.expires_at for info in webhook_secrets.secrets_of(session, tenant)]
    assert all(verifies(secret, headers) for secret in (oldest, first.secret, second.secret))
    assert expiries[0] is None
    assert sorted(expiries[1:]) == [first.previous_expires_at, second.previous_expires_at]


def test_a_tenant_without_a_secret_gets_one_at_its_first_delivery_and_keeps_it(engine, tenant):
    # A tenant made before secrets were per tenant: its first key made none.
    with Session(engine) as session, session.begin():
        assert webhook_secrets.secrets_of(session, tenant) == []
        [made] = webhook_secrets.signing_secrets(session, tenant)
    with Session(engine) as session, session.begin():
        assert webhook_secrets.signing_secrets(session, tenant) == [made]
        assert keys.issue_key(session, tenant).webhook_secret is None  # not its first: not shown
