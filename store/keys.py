"""API keys: random, shown once, kept as hashes, compared in constant time; each belongs to a tenant.

A key reads `ty_<id>_<secret>`. The id finds the row; the secret is checked against the row's SHA-256
with hmac.compare_digest. A plain hash is enough: the secret is 256 random bits, not a password, so
there is nothing for a slow hash to protect against guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from store import webhook_secrets
from store.tables import ApiKey, utcnow

KEY_FORMAT = re.compile(r"^ty_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
TENANT_FORMAT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# Compared against when the id is unknown, so that a wrong id costs the same as a wrong secret.
_NO_SUCH_KEY = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    id: str
    tenant: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    key: str
    webhook_secret: str | None  # the tenant's webhook signing secret, made with its first key; else None


def issue_key(session: Session, tenant: str, name: str | None = None) -> NewKey:
    """A new key for `tenant`, and with its first key its webhook secret: the only time either is seen."""
    if not TENANT_FORMAT.match(tenant):
        raise ValueError(f"tenant {tenant!r}: 1-64 of a-z, 0-9, '_', '.', '-', from a letter or digit")
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    session.add(ApiKey(id=key_id, tenant=tenant, name=name, secret_sha256=_digest(secret)))
    return NewKey(f"ty_{key_id}_{secret}", webhook_secrets.first_secret(session, tenant))


def create_key(session: Session, tenant: str, name: str | None = None) -> str:
    """A new key for `tenant` (see issue_key), for callers that need only the key."""
    return issue_key(session, tenant, name).key


def tenant_of(session: Session, key: str) -> str | None:
    """The tenant a valid, unrevoked key belongs to; None for anything else."""
    match = KEY_FORMAT.match(key)
    if match is None:
        return None
    key_id, secret = match.groups()
    row = session.get(ApiKey, key_id)
    stored = row.secret_sha256 if row is not None and row.revoked_at is None else _NO_SUCH_KEY
    return row.tenant if hmac.compare_digest(stored, _digest(secret)) and row is not None else None


def list_keys(session: Session, tenant: str | None = None) -> list[KeyInfo]:
    query = select(ApiKey).order_by(ApiKey.created_at)
    if tenant is not None:
        query = query.where(ApiKey.tenant == tenant)
    return [KeyInfo(k.id, k.tenant, k.name, k.created_at, k.revoked_at) for k in session.scalars(query)]


def revoke_key(session: Session, key_id: str) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True
