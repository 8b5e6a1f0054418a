"""Webhook signatures: the documented recipe verifies them, tampering and replays fail; the shared secret."""

from __future__ import annotations

import hashlib
import hmac
import stat
import time
from concurrent.futures import ThreadPoolExecutor

from store.settings import Settings
from worker.webhooks import retry_delay_s, sign, signing_secret, verify_signature

SECRET = "s3cret"
BODY = b'{"event":"job.succeeded","job":{"id":"abc"}}'


def test_signature_is_the_documented_hmac():
    # What the README tells receivers to compute, written out independently of sign().
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, BODY) == f"sha256={expected}"


def test_a_fresh_signature_verifies():
    now = int(time.time())
    assert verify_signature(SECRET, BODY, str(now), sign(SECRET, now, BODY))


def test_tampering_and_the_wrong_secret_fail():
    now = int(time.time())
    signature = sign(SECRET, now, BODY)
    assert not verify_signature(SECRET, BODY.replace(b"abc", b"abd"), str(now), signature)
    assert not verify_signature("other", BODY, str(now), signature)
    assert not verify_signature(SECRET, BODY, str(now + 1), signature)  # the timestamp is signed too
    assert not verify_signature(SECRET, BODY, "yesterday", signature)


def test_a_replayed_old_request_fails():
    sent = int(time.time()) - 3600
    signature = sign(SECRET, sent, BODY)
    assert not verify_signature(SECRET, BODY, str(sent), signature)
    assert verify_signature(SECRET, BODY, str(sent), signature, tolerance_s=7200)


def test_a_configured_secret_is_used_as_given(tmp_path):
    assert signing_secret(Settings(home=tmp_path, webhook_secret="from-env")) == "from-env"
    assert not (tmp_path / "webhook_secret").exists()


def test_without_one_a_private_secret_is_generated_once_for_all_processes(tmp_path):
    settings = Settings(home=tmp_path / "home", webhook_secret=None)
    with ThreadPoolExecutor(8) as pool:  # processes of one stack starting at once agree on one secret
        secrets = set(pool.map(lambda _: signing_secret(settings), range(32)))
    assert len(secrets) == 1
    [secret] = secrets
    assert len(secret) >= 32
    path = tmp_path / "home" / "webhook_secret"
    assert path.read_text() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["webhook_secret"]  # no drafts left behind
    assert signing_secret(settings) == secret


def test_retries_back_off_exponentially_up_to_a_cap(tmp_path):
    settings = Settings(home=tmp_path, webhook_backoff_s=1.0, webhook_backoff_max_s=5.0)
    assert [retry_delay_s(attempt, settings) for attempt in range(1, 6)] == [1, 2, 4, 5, 5]
