"""Webhook signatures are Standard Webhooks': the standardwebhooks library verifies them, and refuses a
tampered body, another secret and an old timestamp (a replay)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from store.settings import Settings
from store.webhook_secrets import new_secret
from store.webhooks import Attempt
from worker.webhooks import retry_delay_s, signed_headers

SECRET, OTHER = new_secret(), new_secret()
PAYLOAD = {"event": "job.succeeded", "job": {"id": "abc"}}
BODY = json.dumps(PAYLOAD, separators=(",", ":")).encode()


def attempt(*secrets: str) -> Attempt:
    return Attempt(
        "0123456789abcdef0123456789abcdef", 2, "https://example.com/hook", "job.succeeded", PAYLOAD, secrets
    )


def test_a_signed_delivery_verifies_with_standardwebhooks():
    headers = signed_headers(attempt(SECRET), BODY, int(time.time()))
    assert headers["webhook-id"] == "0123456789abcdef0123456789abcdef"  # the delivery's id, every attempt
    assert headers["X-Trainyard-Event"] == "job.succeeded"
    assert Webhook(SECRET).verify(BODY, headers) == PAYLOAD


def test_the_signature_is_the_specified_hmac():
    # The Standard Webhooks recipe, written out independently: HMAC-SHA256 of "{id}.{timestamp}.{body}"
    # under the base64-decoded part of whsec_..., base64-encoded after "v1,".
    headers = signed_headers(attempt(SECRET), BODY, 1700000000)
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, b"0123456789abcdef0123456789abcdef.1700000000." + BODY, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()


def test_secrets_are_32_random_bytes():
    assert SECRET.startswith("whsec_") and len(base64.b64decode(SECRET.removeprefix("whsec_"))) == 32
    assert SECRET != OTHER


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, headers: (body.replace(b"abc", b"abd"), headers),
        lambda body, headers: (body, headers | {"webhook-id": "another delivery"}),
        lambda body, headers: (
            body,
            headers | {"webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)},
        ),
    ],
    ids=["body", "id", "timestamp"],
)
def test_a_tampered_delivery_fails(tamper):
    body, headers = tamper(BODY, signed_headers(attempt(SECRET), BODY, int(time.time())))
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers)


def test_another_secret_fails():
    headers = signed_headers(attempt(SECRET), BODY, int(time.time()))
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(BODY, headers)


def test_a_replayed_old_delivery_fails():
    headers = signed_headers(attempt(SECRET), BODY, int(time.time()) - 3600)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(BODY, headers)


def test_with_two_secrets_each_verifies():
    headers = signed_headers(attempt(SECRET, OTHER), BODY, int(time.time()))
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(SECRET).verify(BODY, headers) == Webhook(OTHER).verify(BODY, headers) == PAYLOAD


def test_retries_back_off_exponentially_up_to_a_cap(tmp_path):
    settings = Settings(home=tmp_path, webhook_backoff_s=1.0, webhook_backoff_max_s=5.0)
    assert [retry_delay_s(attempt, settings) for attempt in range(1, 6)] == [1, 2, 4, 5, 5]
