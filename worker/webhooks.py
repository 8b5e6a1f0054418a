"""Sending webhook deliveries: sign, POST, record the answer; retried with backoff until a 2xx or the end.

Receivers verify `X-Trainyard-Signature: sha256=<hex>`, the HMAC-SHA256 of "{X-Trainyard-Timestamp}.{body}"
under the shared secret, and refuse old timestamps (replays); `verify_signature` is the reference.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
from sqlalchemy.orm import Session

from store import egress, webhooks
from store.db import session_scope
from store.settings import Settings, get_settings
from store.webhooks import Attempt

log = logging.getLogger(__name__)

SECRET_FILE = "webhook_secret"
SENDERS = 4  # the recovery loop's sending threads: POSTs in flight at once from one worker
USER_AGENT = "trainyard-webhooks/0.1"


def signing_secret(settings: Settings) -> str:
    """TRAINYARD_WEBHOOK_SECRET, else one generated once in TRAINYARD_HOME and shared by its processes."""
    if settings.webhook_secret:
        return settings.webhook_secret
    path = settings.home / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(draft, path)  # atomic and exclusive: of processes generating at once, the first one wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Trainyard-Signature header: HMAC-SHA256 of "{timestamp}.{body}", so a replay shows its age."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """What a receiver checks: the signature is the secret's for this body and timestamp, and it is recent."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature)


def retry_delay_s(attempt: int, settings: Settings) -> float:
    """Wait after failed attempt `attempt` (1 for the first): webhook_backoff_s, doubling, capped."""
    return min(settings.webhook_backoff_s * 2 ** (attempt - 1), settings.webhook_backoff_max_s)


def claim(session: Session, delivery_id: str, settings: Settings) -> Attempt | None:
    # The lease outlasts a POST: httpx's timeout bounds each phase of it (connect, write, read), not all.
    lease_s = 4 * settings.webhook_timeout_s + 5
    return webhooks.claim_attempt(
        session, delivery_id, max_attempts=settings.webhook_max_attempts, lease_s=lease_s
    )


def deliver(delivery_id: str) -> str | None:
    """Make the next attempt at a delivery if it is due and no other sender took it; answers its status."""
    settings = get_settings()
    with session_scope() as session:
        attempt = claim(session, delivery_id, settings)
    return send(attempt, settings) if attempt else None


def send(attempt: Attempt, settings: Settings) -> str:
    """POST one claimed attempt, signed, and record the answer; answers delivered, pending or failed."""
    body = json.dumps(attempt.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Trainyard-Event": attempt.event,
        "X-Trainyard-Delivery": attempt.delivery_id,
        "X-Trainyard-Timestamp": str(timestamp),
        "X-Trainyard-Signature": sign(signing_secret(settings), timestamp, body),
    }
    status_code, error = None, None
    started = time.perf_counter()
    refused = egress.refusal(attempt.url, allow_private=settings.webhook_allow_private, resolve=True)
    try:
        if refused:
            raise PermissionError(refused)  # recorded as this attempt's outcome, as any failure
        # Streamed and never read: a receiver's answer is its status code, whatever body it sends.
        # Redirects are not followed: a 3xx is a failed attempt, like any answer but a 2xx.
        with httpx.stream(
            "POST", attempt.url, content=body, headers=headers, timeout=settings.webhook_timeout_s
        ) as response:
            status_code = response.status_code
        if not response.is_success:
            error = f"HTTP {status_code}"
    except Exception as exc:  # refused, timed out, bad TLS...: recorded as this attempt's outcome, retried
        error = f"{type(exc).__name__}: {exc}".rstrip(": ")
    duration_ms = (time.perf_counter() - started) * 1000
    with session_scope() as session:
        status = webhooks.record_attempt(
            session,
            attempt,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
            max_attempts=settings.webhook_max_attempts,
            retry_in_s=retry_delay_s(attempt.number, settings),
        )
    log.info(
        "webhook %s %s attempt %d: %s -> %s",
        attempt.delivery_id,
        attempt.event,
        attempt.number,
        error or status_code,
        status,
    )
    return status


# ---------------------------------------------------------------- the recovery loop's sender

_senders: ThreadPoolExecutor | None = None  # created on first use: never in a process that will fork
_in_flight: set[Future] = set()


def send_due_webhooks(settings: Settings) -> int:
    """Claim due deliveries (retries, and first attempts whose broker message was lost) and send them.

    Called by the recovery loop, in the worker's main process, so deliveries go out even while every
    training process is busy; they are sent by a few threads so a slow receiver never holds up the loop,
    and only as many are claimed as there are free threads, so no claim waits out its lease in a queue.
    """
    global _senders
    _in_flight.difference_update([future for future in _in_flight if future.done()])
    free = SENDERS - len(_in_flight)
    if free <= 0:
        return 0
    with session_scope() as session:
        claims = [claim(session, due, settings) for due in webhooks.due_deliveries(session, free)]
    if _senders is None:
        _senders = ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook")
    claimed = [attempt for attempt in claims if attempt is not None]
    for attempt in claimed:
        future = _senders.submit(send, attempt, settings)
        future.add_done_callback(_log_failure)
        _in_flight.add(future)
    return len(claimed)


def _log_failure(future: Future) -> None:
    # The attempt stays claimed until its lease passes; then it is sent again.
    if future.exception() is not None:
        log.error("sending a webhook failed", exc_info=future.exception())
