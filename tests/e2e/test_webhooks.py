"""A job with a notify_url POSTs its summary, signed, to a real HTTP receiver when it ends, until accepted.

Deliveries are verified as a receiver does, with the standardwebhooks library and the tenant's secret, as
`trainyard keys create` printed it with the tenant's first key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from tests.factories import lenet_spec, training
from tests.live_stack import TEST_SETTINGS, LiveStack
from tests.webhook_receiver import Receiver
from trainyard.services import start_private_redis


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


def wait_delivered(stack, job_id: str, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        response = stack.http.get(f"/v1/jobs/{job_id}/webhooks")
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        if items and all(item["status"] != "pending" for item in items) or time.monotonic() > deadline:
            return items
        time.sleep(0.1)


def test_a_finished_job_is_posted_signed_and_retried_until_accepted(stack, receiver):
    url = receiver.url(500)
    job = stack.wait_finished(stack.submit(lenet_spec(training=training(epochs=1), notify_url=url))["id"])
    assert job["status"] == "succeeded", job["error"]

    failed, accepted = receiver.wait(url, 2)
    assert (failed.answered, accepted.answered) == (500, 200)
    assert accepted.headers["X-Trainyard-Event"] == "job.succeeded"
    assert accepted.headers["webhook-id"] == failed.headers["webhook-id"]  # the same on every attempt
    assert accepted.headers["Content-Type"] == "application/json"
    # What docs/api.md tells receivers to do: the signature and a recent timestamp, by standardwebhooks.
    secret = stack.webhook_secrets["default"]
    assert Webhook(secret).verify(accepted.body, accepted.headers) == accepted.payload

    payload = accepted.payload
    assert payload["event"] == "job.succeeded"
    assert {key: payload["job"][key] for key in ("id", "name", "kind", "status", "attempts", "error")} == {
        key: job[key] for key in ("id", "name", "kind", "status", "attempts", "error")
    }
    assert payload["job"]["metrics"]["test_acc"] == job["metrics"]["test_acc"]
    [run] = job["runs"]
    assert payload["job"]["runs"] == [{"id": run["id"], "member": 0, "test_acc": run["test_acc"]}]
    assert payload["job"]["finished_at"] is not None

    [delivery] = wait_delivered(stack, job["id"])
    assert delivery["status"] == "delivered"
    assert delivery["id"] == accepted.headers["webhook-id"]
    assert (delivery["event"], delivery["url"], delivery["attempts"]) == ("job.succeeded", url, 2)
    assert [(a["attempt"], a["status_code"], a["error"]) for a in delivery["history"]] == [
        (1, 500, "HTTP 500"),
        (2, 200, None),
    ]
    assert delivery["payload"] == payload


def test_a_receiver_holding_one_tenants_secret_rejects_another_tenants_deliveries(stack, receiver):
    # Tenant B is made as an operator makes one: its first key, printed with its own secret.
    tenant_b = f"hooks-{uuid.uuid4().hex[:8]}"
    client_b = httpx.Client(base_url=stack.url, timeout=30)
    client_b.headers["Authorization"] = f"Bearer {stack.new_key(tenant_b)}"
    secret_a, secret_b = stack.webhook_secrets["default"], stack.webhook_secrets[tenant_b]
    url_a, url_b = receiver.url(), receiver.url()
    job_a = stack.submit(lenet_spec(name="a", training=training(epochs=1), notify_url=url_a))
    submitted = client_b.post(
        "/v1/jobs", json=lenet_spec(name="b", training=training(epochs=1), notify_url=url_b)
    )
    assert submitted.status_code == 202, submitted.text

    [from_a], [from_b] = receiver.wait(url_a, 1, timeout=120), receiver.wait(url_b, 1, timeout=120)
    assert from_a.payload["job"]["id"] == job_a["id"]
    assert from_b.payload["job"]["id"] == submitted.json()["id"]
    assert Webhook(secret_a).verify(from_a.body, from_a.headers)["job"]["id"] == job_a["id"]
    assert Webhook(secret_b).verify(from_b.body, from_b.headers)["job"]["id"] == submitted.json()["id"]
    with pytest.raises(WebhookVerificationError):  # B cannot pass for A, nor A for B
        Webhook(secret_a).verify(from_b.body, from_b.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_b).verify(from_a.body, from_a.headers)
    client_b.close()


def test_cancelled_jobs_notify_while_the_worker_is_busy_training(stack, receiver):
    running_url, queued_url = receiver.url(), receiver.url()
    running = stack.submit(lenet_spec(name="long", training=training(epochs=500), notify_url=running_url))
    stack.wait_for(running["id"], lambda j: j["status"] == "running" and j["progress"]["step"] > 0)
    queued = stack.submit(lenet_spec(name="behind", training=training(epochs=1), notify_url=queued_url))
    assert stack.http.post(f"/v1/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"

    # The only training process is busy: the worker's main process sends it all the same.
    [notified] = receiver.wait(queued_url, 1)
    assert notified.headers["X-Trainyard-Event"] == "job.cancelled"
    assert notified.payload["job"]["id"] == queued["id"]
    assert notified.payload["job"]["status"] == "cancelled"
    assert stack.job(running["id"])["status"] == "running"

    stack.http.post(f"/v1/jobs/{running['id']}/cancel")
    assert stack.wait_finished(running["id"])["status"] == "cancelled"
    [notified] = receiver.wait(running_url, 1)
    assert notified.payload["event"] == "job.cancelled"
    assert notified.payload["job"]["attempts"] == 1


def test_an_ensemble_job_notifies_once_for_all_its_members(stack, receiver):
    url = receiver.url()
    spec = lenet_spec(training=training(epochs=1), ensemble={"members": 2}, notify_url=url)
    job = stack.wait_finished(stack.submit(spec)["id"])
    assert job["status"] == "succeeded", job["error"]

    [notified] = receiver.wait(url, 1)
    assert notified.payload["job"]["kind"] == "ensemble"
    assert notified.payload["job"]["ensemble_id"] == job["ensemble_id"] is not None
    assert [run["member"] for run in notified.payload["job"]["runs"]] == [0, 1]
    for member in job["members"]:
        assert stack.http.get(f"/v1/jobs/{member['id']}/webhooks").json()["items"] == []
        assert stack.job(member["id"])["spec"]["notify_url"] is None


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "not a url", "http://"])
def test_a_bad_notify_url_is_refused(stack, url):
    response = stack.http.post("/v1/jobs", json=lenet_spec(notify_url=url))
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["body", "notify_url"]]


def test_webhooks_of_an_unknown_job_are_404(stack):
    assert stack.http.get("/v1/jobs/nope/webhooks").status_code == 404


@pytest.fixture(scope="module")
def strict_stack(tmp_path_factory) -> Iterator[LiveStack]:
    """API and worker with the production default: webhooks to public addresses only."""
    home = tmp_path_factory.mktemp("strict-webhooks")
    server = start_private_redis(home / "redis")
    settings = TEST_SETTINGS | {"TRAINYARD_WEBHOOK_ALLOW_PRIVATE": "false"}
    live = LiveStack(home, f"sqlite:///{home / 'trainyard.db'}", server.url, settings=settings)
    live.start_api()
    live.start_worker()
    yield live
    live.stop()
    server.stop()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data/", "http://localhost/x"]
)
def test_a_notify_url_into_the_private_network_is_refused_at_submission(strict_stack, url):
    queued = strict_stack.queued_messages()
    response = strict_stack.http.post("/v1/jobs", json=lenet_spec(notify_url=url))
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "notify_url"] and "TRAINYARD_WEBHOOK_ALLOW_PRIVATE" in error["msg"]
    assert strict_stack.queued_messages() == queued


def test_a_name_that_resolves_into_the_private_network_is_refused_at_delivery(strict_stack, private_hostname):
    # The API lets a name through without a lookup; the worker looks it up before each attempt.
    spec = lenet_spec(training=training(epochs=1), notify_url=f"http://{private_hostname}:9/hook")
    job = strict_stack.wait_finished(strict_stack.submit(spec)["id"])
    assert job["status"] == "succeeded"
    [delivery] = wait_delivered(strict_stack, job["id"])
    assert delivery["status"] == "failed" and delivery["history"], delivery  # never sent, after its retries
    assert all("is not a public address" in attempt["error"] for attempt in delivery["history"])
    assert all(attempt["status_code"] is None for attempt in delivery["history"])
