"""Each tenant's webhook signing secrets: made with its first key, rotated with a grace period.

A tenant's deliveries are signed with every secret that still signs: the current one (expires_at null)
and the rotated-out ones until their expires_at, so a receiver can switch to the new secret without
losing a delivery. Secrets are Standard Webhooks secrets, `whsec_` + base64 of 32 random bytes.

Two rotations (or two lazy creations) at the same moment can leave two current rows; both sign, and the
next rotation retires both: nothing is lost, so no lock is taken.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from store.tables import WebhookSecret, utcnow

PREFIX = "whsec_"


@dataclass(frozen=True)
class SecretInfo:
    """What a tenant may see of a secret it holds: when it was made and when it stops signing."""

    created_at: datetime
    expires_at: datetime | None  # None: the current secret


@dataclass(frozen=True)
class Rotated:
    secret: str  # the new current secret: the only time it is shown
    created_at: datetime
    previous_expires_at: datetime | None  # when the secrets it replaces stop signing; None if there were none


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _aware(moment: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; everything stored is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _signing_rows(session: Session, tenant: str, now: datetime) -> list[WebhookSecret]:
    """The tenant's secrets that still sign, newest first."""
    query = (
        select(WebhookSecret)
        .where(WebhookSecret.tenant == tenant)
        .where(or_(WebhookSecret.expires_at.is_(None), WebhookSecret.expires_at > now))
        .order_by(WebhookSecret.created_at.desc())
    )
    return list(session.scalars(query))


def _add(session: Session, tenant: str, now: datetime) -> WebhookSecret:
    row = WebhookSecret(tenant=tenant, secret=new_secret(), created_at=now)
    session.add(row)
    session.flush()
    return row


def first_secret(session: Session, tenant: str) -> str | None:
    """With a tenant's first key: its first secret, to show once; None when it has one already."""
    if session.scalar(select(WebhookSecret.id).where(WebhookSecret.tenant == tenant).limit(1)) is not None:
        return None
    return _add(session, tenant, utcnow()).secret


def signing_secrets(session: Session, tenant: str, now: datetime | None = None) -> list[str]:
    """The secrets a delivery of `tenant` is signed with, newest first.

    A tenant with none (made before secrets were per tenant) gets one here, so its deliveries are signed
    all the same; it learns that secret by rotating.
    """
    now = now or utcnow()
    rows = _signing_rows(session, tenant, now) or [_add(session, tenant, now)]
    return [row.secret for row in rows]


def rotate(session: Session, tenant: str, grace_s: float, now: datetime | None = None) -> Rotated:
    """A new current secret; the ones it replaces keep signing for `grace_s` more seconds."""
    now = now or utcnow()
    ends = now + timedelta(seconds=grace_s)
    replaced = _signing_rows(session, tenant, now)
    for row in replaced:  # one already ending sooner keeps its end
        if row.expires_at is None or _aware(row.expires_at) > ends:
            row.expires_at = ends
    # Expired ones sign nothing any more: gone, so the table holds a few rows per tenant at most.
    expired = delete(WebhookSecret).where(WebhookSecret.tenant == tenant, WebhookSecret.expires_at <= now)
    session.execute(expired.execution_options(synchronize_session=False))
    row = _add(session, tenant, now)
    return Rotated(row.secret, row.created_at, ends if replaced else None)


def secrets_of(session: Session, tenant: str, now: datetime | None = None) -> list[SecretInfo]:
    """When each signing secret of the tenant was made and stops signing, newest first (never the secret)."""
    rows = _signing_rows(session, tenant, now or utcnow())
    return [SecretInfo(_aware(row.created_at), row.expires_at and _aware(row.expires_at)) for row in rows]
