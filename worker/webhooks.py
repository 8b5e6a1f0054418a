"""Sending webhook deliveries: sign, POST, record the answer; retried with backoff until a 2xx or the end.

Deliveries follow Standard Webhooks (https://www.standardwebhooks.com): `webhook-id` (the delivery id, the
same for every attempt), `webhook-timestamp` (this attempt's Unix seconds) and `webhook-signature`, one
`v1,<base64>` HMAC-SHA256 of "{id}.{timestamp}.{body}" per secret of the job's tenant, space-separated
(two during a rotation's grace period). Receivers verify with any Standard Webhooks library, e.g.
`standardwebhooks.Webhook(secret).verify(body, headers)`, which also refuses old timestamps (replays).
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from store import egress, webhooks
from store.db import session_scope
from store.settings import Settings, get_settings
from store.webhooks import Attempt

log = logging.getLogger(__name__)

SENDERS = 4  # the recovery loop's sending threads: POSTs in flight at once from one worker
USER_AGENT = "trainyard-webhooks/0.1"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None  # the receiver's answer; None when none came
    error: str | None
    duration_ms: float


def signature(secrets: Sequence[str], delivery_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: each secret's `v1,<base64>` signature, space-separated."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return " ".join(Webhook(secret).sign(delivery_id, moment, body.decode()) for secret in secrets)


def signed_headers(attempt: Attempt, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Trainyard-Event": attempt.event,
        "webhook-id": attempt.delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(attempt.secrets, attempt.delivery_id, timestamp, body),
    }


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


def post(attempt: Attempt, settings: Settings, *, verify: ssl.SSLContext | bool = True) -> Outcome:
    """POST one claimed attempt, signed, to the address egress checked. `verify`: see egress.post."""
    body = json.dumps(attempt.payload, separators=(",", ":")).encode()
    headers = signed_headers(attempt, body, int(time.time()))
    status_code, error = None, None
    started = time.perf_counter()
    try:
        status_code = egress.post(
            attempt.url,
            content=body,
            headers=headers,
            timeout=settings.webhook_timeout_s,
            allow_private=settings.webhook_allow_private,
            verify=verify,
        )
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"  # a 3xx too: redirects are not followed
    except Exception as exc:  # refused, unknown name, timed out, bad TLS...: this attempt's outcome, retried
        error = f"{type(exc).__name__}: {exc}".rstrip(": ")
    return Outcome(status_code, error, (time.perf_counter() - started) * 1000)


def send(attempt: Attempt, settings: Settings) -> str:
    """POST one claimed attempt and record the answer; answers delivered, pending or failed."""
    outcome = post(attempt, settings)
    with session_scope() as session:
        status = webhooks.record_attempt(
            session,
            attempt,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            max_attempts=settings.webhook_max_attempts,
            retry_in_s=retry_delay_s(attempt.number, settings),
        )
    log.info(
        "webhook %s %s attempt %d: %s -> %s",
        attempt.delivery_id,
        attempt.event,
        attempt.number,
        outcome.error or outcome.status_code,
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
