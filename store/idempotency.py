"""Idempotency keys: the first answer to a POST, kept per tenant and route, so that a retry replays it."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta, timezone
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from store.tables import IdempotencyKey, utcnow


def request_digest(body: dict[str, Any]) -> str:
    """The body's SHA-256 as canonical JSON: key order and whitespace make no other request."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def find(session: Session, tenant: str, scope: str, key: str, ttl_s: float) -> IdempotencyKey | None:
    """The key's first answer, unless it is older than `ttl_s` (then it is forgotten)."""
    row = session.get(IdempotencyKey, (tenant, scope, key))
    if row is None:
        return None
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
    if utcnow() - created <= timedelta(seconds=ttl_s):
        return row
    session.delete(row)
    session.flush()
    return None


def remember(
    session: Session,
    *,
    tenant: str,
    scope: str,
    key: str,
    digest: str,
    status_code: int,
    location: str,
    response: str,
    ttl_s: float,
) -> None:
    """Keeps an answer, in the transaction that stores what it answers; expired keys go on the way."""
    expired = utcnow() - timedelta(seconds=ttl_s)
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < expired))
    session.add(
        IdempotencyKey(
            tenant=tenant,
            scope=scope,
            key=key,
            request_sha256=digest,
            status_code=status_code,
            location=location,
            response=response,
        )
    )


def forget(session: Session, tenant: str, scope: str, key: str) -> None:
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.tenant == tenant, IdempotencyKey.scope == scope, IdempotencyKey.key == key
        )
    )
