"""A tenant's webhook secret through the API: rotating shows the new one once and keeps the old one
signing through the grace period; reading shows when each was made and stops, never a secret."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import pytest

from store import webhook_secrets
from tests.in_process_api import InProcessApi

GRACE_S = 3600


@pytest.fixture(scope="module")
def api(start_in_process_api) -> InProcessApi:
    return start_in_process_api(webhook_secret_grace_s=GRACE_S)


def new_tenant(api: InProcessApi) -> tuple[str, httpx.Client]:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    return tenant, api.client(api.new_key(tenant))


def signing_secrets(api: InProcessApi, tenant: str) -> list[str]:
    """What the sender would sign the tenant's next delivery with."""
    with api.app.state.resources.sessions() as session:
        return webhook_secrets.signing_secrets(session, tenant)


def test_a_new_tenant_has_a_current_secret_made_with_its_first_key(api):
    _, client = new_tenant(api)
    answer = client.get("/v1/webhooks/secret")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"current", "previous"}
    assert body["current"]["expires_at"] is None and body["previous"] == []
    assert "whsec_" not in answer.text


def test_rotating_answers_the_new_secret_once_and_the_old_one_signs_until_the_grace_period_ends(api):
    tenant, client = new_tenant(api)
    [old] = signing_secrets(api, tenant)
    rotated = client.post("/v1/webhooks/secret/rotate")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["secret"].startswith("whsec_") and new["secret"] != old
    ends = datetime.fromisoformat(new["previous_expires_at"])
    assert ends - datetime.fromisoformat(new["created_at"]) == timedelta(seconds=GRACE_S)
    assert signing_secrets(api, tenant) == [new["secret"], old]

    listed = client.get("/v1/webhooks/secret")
    assert "whsec_" not in listed.text  # shown once: never again
    body = listed.json()
    assert body["current"] == {"created_at": new["created_at"], "expires_at": None}
    [previous] = body["previous"]
    assert datetime.fromisoformat(previous["expires_at"]) == ends


def test_another_tenants_rotation_leaves_ones_secret_alone(api):
    (me, mine), (_, theirs) = new_tenant(api), new_tenant(api)
    before, signing = mine.get("/v1/webhooks/secret").json(), signing_secrets(api, me)
    assert theirs.post("/v1/webhooks/secret/rotate").status_code == 200
    assert mine.get("/v1/webhooks/secret").json() == before
    assert signing_secrets(api, me) == signing
    assert theirs.get("/v1/webhooks/secret").json()["previous"] != []


def test_the_routes_want_a_key(api):
    anonymous = api.client()
    assert anonymous.get("/v1/webhooks/secret").status_code == 401
    assert anonymous.post("/v1/webhooks/secret/rotate").status_code == 401


def test_a_leaked_secret_is_rotated_out_at_once_with_grace_0_and_no_grace_longer_than_the_setting(api):
    tenant, client = new_tenant(api)
    [old] = signing_secrets(api, tenant)
    longer = client.post("/v1/webhooks/secret/rotate", params={"grace_s": GRACE_S + 1})
    assert longer.status_code == 422 and longer.json()["detail"][0]["loc"] == ["query", "grace_s"]
    assert signing_secrets(api, tenant) == [old]  # the refused rotation changed nothing

    rotated = client.post("/v1/webhooks/secret/rotate", params={"grace_s": 0})
    assert rotated.status_code == 200, rotated.text
    assert signing_secrets(api, tenant) == [rotated.json()["secret"]]
