"""Idempotency-Key on POST /v1/jobs and POST /v1/ensembles: a retry replays the first answer, once queued."""

from __future__ import annotations

import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.factories import lenet_spec, training


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def age_key(stack, header: dict[str, str], hours: float) -> None:
    """Makes a kept answer `hours` old, as if it had been given then."""
    then = datetime.now(timezone.utc) - timedelta(hours=hours)
    with sqlite3.connect(stack.database_path) as db:
        changed = db.execute(
            "UPDATE idempotency_keys SET created_at = ? WHERE key = ?",
            (then.strftime("%Y-%m-%d %H:%M:%S.%f"), header["Idempotency-Key"]),
        ).rowcount
    assert changed == 1


def test_the_same_key_and_body_replays_the_first_answer_and_queues_once(in_process_api):
    spec, header = lenet_spec(name="idempotent"), key()
    queued = in_process_api.queued_messages()
    first = in_process_api.http.post("/v1/jobs", json=spec, headers=header)
    again = in_process_api.http.post("/v1/jobs", json=spec, headers=header)
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"] == f"/v1/jobs/{first.json()['id']}"
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert in_process_api.queued_messages() == queued + 1
    # Key order and whitespace do not make another body.
    reordered = dict(reversed(list(spec.items())))
    assert (
        in_process_api.http.post("/v1/jobs", json=reordered, headers=header).json()["id"]
        == first.json()["id"]
    )


def test_the_same_key_with_another_body_is_a_422_and_queues_nothing(in_process_api):
    header = key()
    assert (
        in_process_api.http.post("/v1/jobs", json=lenet_spec(name="one"), headers=header).status_code == 202
    )
    queued = in_process_api.queued_messages()
    other = in_process_api.http.post("/v1/jobs", json=lenet_spec(name="two"), headers=header)
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
    assert "another body" in other.json()["detail"][0]["msg"]
    assert in_process_api.queued_messages() == queued


def test_concurrent_retries_with_one_key_make_one_job(in_process_api):
    spec, header = lenet_spec(name="racing"), key()
    queued = in_process_api.queued_messages()

    def post(_):
        return in_process_api.http.post("/v1/jobs", json=spec, headers=header)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert [a.status_code for a in answers] == [202] * 8, [a.text for a in answers if a.status_code != 202]
    assert len({a.json()["id"] for a in answers}) == 1
    assert in_process_api.queued_messages() == queued + 1


def test_keys_are_per_tenant(in_process_api):
    spec, header = lenet_spec(name="shared-key"), key()
    mine = in_process_api.http.post("/v1/jobs", json=spec, headers=header)
    other_key = {"Authorization": f"Bearer {in_process_api.new_key('other-team')}"}
    theirs = httpx.post(f"{in_process_api.url}/v1/jobs", json=spec, headers=header | other_key)
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]


def test_an_answer_is_kept_24_hours(in_process_api):
    spec, header = lenet_spec(name="kept"), key()
    first = in_process_api.http.post("/v1/jobs", json=spec, headers=header).json()
    age_key(in_process_api, header, hours=23.9)
    assert in_process_api.http.post("/v1/jobs", json=spec, headers=header).json()["id"] == first["id"]
    age_key(in_process_api, header, hours=24.1)  # then it is forgotten: the same request is a new job
    later = in_process_api.http.post("/v1/jobs", json=spec, headers=header)
    assert later.status_code == 202 and "idempotent-replayed" not in later.headers
    assert later.json()["id"] != first["id"]


def test_a_refused_request_keeps_no_answer(in_process_api):
    header = key()
    spec = lenet_spec(training=training(epochs=10**6))  # over max_epochs
    too_long = in_process_api.http.post("/v1/jobs", json=spec, headers=header)
    assert too_long.status_code == 422
    fixed = in_process_api.http.post("/v1/jobs", json=lenet_spec(), headers=header)
    assert fixed.status_code == 202 and "idempotent-replayed" not in fixed.headers


@pytest.mark.parametrize("bad", ["", "has spaces", "x" * 256, "naïve"])
def test_a_malformed_key_is_a_422(in_process_api, bad):
    queued = in_process_api.queued_messages()
    response = in_process_api.http.post(
        "/v1/jobs", json=lenet_spec(), headers={"Idempotency-Key": bad.encode()}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert in_process_api.queued_messages() == queued


def test_ensembles_replay_the_first_answer(stack):
    job = stack.wait_finished(stack.submit(lenet_spec(training=training(epochs=1)))["id"])
    run_id, header = job["runs"][0]["id"], key()
    body = {"members": [run_id, run_id], "name": "idempotent"}
    first = stack.http.post("/v1/ensembles", json=body, headers=header)
    again = stack.http.post("/v1/ensembles", json=body, headers=header)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    named = [e for e in stack.http.get("/v1/ensembles").json()["items"] if e["name"] == "idempotent"]
    assert len(named) == 1
    other = stack.http.post("/v1/ensembles", json=body | {"method": "weights"}, headers=header)
    assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
