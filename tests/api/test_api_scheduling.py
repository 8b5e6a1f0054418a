"""A tenant's jobs past its running limit wait in SQL, not in the broker, and go once a slot frees."""

from __future__ import annotations

import pytest

from tests.factories import lenet_spec, training


@pytest.fixture(scope="module")
def limited(start_in_process_api):
    """No worker: capacity is unknown, so only the tenants' limit of one holds jobs back."""
    return start_in_process_api(max_running_per_tenant=1)


def test_a_job_past_its_tenants_limit_waits_in_sql_while_another_tenant_is_sent(limited):
    tenant_a, tenant_b = limited.client(limited.new_key("a")), limited.client(limited.new_key("b"))
    submitted = [
        (tenant_a, tenant_a.post("/v1/jobs", json=lenet_spec()).json()["id"]),
        (tenant_a, tenant_a.post("/v1/jobs", json=lenet_spec(training=training(priority=5))).json()["id"]),
        (tenant_b, tenant_b.post("/v1/jobs", json=lenet_spec()).json()["id"]),
    ]
    first, second, other = (client.get(f"/v1/jobs/{job_id}").json() for client, job_id in submitted)
    assert first["dispatched_at"] is not None and other["dispatched_at"] is not None
    assert second["status"] == "queued" and second["dispatched_at"] is None
    assert limited.queued_messages() == 2  # the broker holds the two sent, not the one waiting

    # Cancelling A's first job frees its slot at once: the waiting one is sent.
    assert tenant_a.post(f"/v1/jobs/{first['id']}/cancel").status_code == 202
    assert tenant_a.get(f"/v1/jobs/{second['id']}").json()["dispatched_at"] is not None
    assert limited.queued_messages() == 3
    assert second["spec"]["training"]["priority"] == 5


def test_priority_is_bounded(limited):
    response = limited.http.post("/v1/jobs", json=lenet_spec(training=training(priority=101)))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-2:] == ["training", "priority"]
