"""Jobs with no worker, the app in-process: listing, paging and filtering, cancelling queued work, event
streams of jobs that never start."""

from __future__ import annotations

import time

import httpx
from httpx_sse import connect_sse

from tests.factories import lenet_spec


def test_the_status_filter_takes_the_job_states_only(in_process_api):
    queued = in_process_api.submit(lenet_spec(name="stays-queued"))
    cancelled = in_process_api.submit(lenet_spec(name="cancelled"))
    assert in_process_api.http.post(f"/v1/jobs/{cancelled['id']}/cancel").status_code == 202

    def listed(status: str) -> set[str]:
        response = in_process_api.http.get("/v1/jobs", params={"status": status, "limit": 100})
        assert response.status_code == 200, response.text
        assert all(job["status"] == status for job in response.json()["items"])
        return {job["id"] for job in response.json()["items"]}

    assert queued["id"] in listed("queued") and cancelled["id"] not in listed("queued")
    assert cancelled["id"] in listed("cancelled")
    assert listed("succeeded") == set()
    refused = in_process_api.http.get("/v1/jobs", params={"status": "done"})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "status"]


def test_pages_follow_the_cursor_newest_first_and_a_bad_cursor_is_a_422(in_process_api):
    submitted = [in_process_api.http.post("/v1/jobs", json=lenet_spec(name=f"page-{i}")) for i in range(3)]
    assert [r.status_code for r in submitted] == [202] * 3
    assert [r.headers["location"] for r in submitted] == [f"/v1/jobs/{r.json()['id']}" for r in submitted]
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = in_process_api.http.get("/v1/jobs", params=params).json()
        seen += [job["id"] for job in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    newest_first = [r.json()["id"] for r in reversed(submitted)]
    assert seen[: len(newest_first)] == newest_first and len(seen) == len(set(seen))
    refused = in_process_api.http.get("/v1/jobs", params={"cursor": "not-a-cursor"})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "cursor"]


def test_cancel_a_queued_job(in_process_api):
    job = in_process_api.submit(lenet_spec())
    response = in_process_api.http.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"


def test_a_queued_job_cancelled_ends_its_stream(in_process_api):
    job = in_process_api.submit(lenet_spec())  # no worker: it stays queued
    started = time.monotonic()
    with httpx.Client(base_url=in_process_api.url, timeout=30, headers=in_process_api.http.headers) as http:
        with connect_sse(http, "GET", f"/v1/jobs/{job['id']}/events") as source:
            events = source.iter_sse()
            assert next(events).json()["status"] == "queued"
            assert http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
            rest = list(events)
    assert [e.event for e in rest] == ["status", "done"]
    assert rest[-1].json()["status"] == "cancelled"
    assert time.monotonic() - started < 10


def test_an_idle_stream_gets_heartbeats(in_process_api):
    job = in_process_api.submit(lenet_spec())
    with httpx.Client(base_url=in_process_api.url, timeout=30, headers=in_process_api.http.headers) as http:
        with http.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
            lines = []
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith(":"):
                    break
    assert lines[-1].startswith(":"), "a comment line keeps proxies from closing the stream"
    http_ok = in_process_api.http.post(f"/v1/jobs/{job['id']}/cancel")
    assert http_ok.status_code == 202


def test_a_cancelled_queued_jobs_webhook_is_sent_to_the_apps_own_queue(in_process_api):
    # The delivery is enqueued when the cancel commits, through the app's producer (its settings' Redis),
    # never a process-wide one: with no worker here, it waits in this app's queue beside the job.
    job = in_process_api.submit(lenet_spec(notify_url="http://127.0.0.1:9/hook"))
    before = in_process_api.queued_messages()
    assert in_process_api.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    assert in_process_api.queued_messages() == before + 1
    deliveries = in_process_api.http.get(f"/v1/jobs/{job['id']}/webhooks").json()
    assert [d["event"] for d in deliveries["items"]] == ["job.cancelled"]
