"""A tenant's webhook signing secret: rotate it (the new one is shown once), and see when each signs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from api.auth import current_tenant
from api.deps import SessionDep, SettingsDep, TenantDep
from api.field_errors import invalid
from api.schemas import UtcModel
from store import webhook_secrets

GRACE_HELP = "seconds the old secrets keep signing; default, and most: webhook_secret_grace_s"

router = APIRouter(prefix="/v1/webhooks/secret", tags=["webhooks"], dependencies=[Depends(current_tenant)])


class WebhookSecretOut(UtcModel):
    created_at: datetime
    expires_at: datetime | None = Field(description="when it stops signing; null for the current secret")


class WebhookSecrets(UtcModel):
    current: WebhookSecretOut | None = Field(
        description="the secret deliveries are signed with; null while there is none (a delivery makes one)"
    )
    previous: list[WebhookSecretOut] = Field(
        description="rotated-out secrets still signing beside it until their expires_at, newest first"
    )


class RotatedSecret(UtcModel):
    secret: str = Field(description="the new secret, `whsec_<base64>`: shown only in this answer")
    created_at: datetime
    previous_expires_at: datetime | None = Field(
        description="until then the secrets it replaces sign too; null when there were none"
    )


@router.get("", response_model=WebhookSecrets)
def read_webhook_secrets(session: SessionDep, tenant: TenantDep) -> WebhookSecrets:
    held = [WebhookSecretOut(**vars(info)) for info in webhook_secrets.secrets_of(session, tenant)]
    current = next((info for info in held if info.expires_at is None), None)
    return WebhookSecrets(current=current, previous=[info for info in held if info is not current])


@router.post("/rotate", response_model=RotatedSecret)
def rotate_webhook_secret(
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    grace_s: Annotated[float | None, Query(ge=0, description=GRACE_HELP)] = None,
) -> RotatedSecret:
    """A new secret; 0 as grace_s stops the old ones at once (a leaked secret)."""
    longest = settings.webhook_secret_grace_s
    if grace_s is not None and grace_s > longest:
        raise invalid(("query", "grace_s"), f"at most {longest:g} s (webhook_secret_grace_s)", grace_s)
    rotated = webhook_secrets.rotate(session, tenant, longest if grace_s is None else grace_s)
    session.commit()
    return RotatedSecret(**vars(rotated))
