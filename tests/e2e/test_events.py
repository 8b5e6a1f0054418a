"""GET /v1/jobs/{id}/events against the live stack: order, resume without duplicates or gaps, done."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from httpx_sse import connect_sse

from store.streams import curve_key, stream_id_key
from tests.factories import lenet_spec, training


def follow(stack, job_id: str, last_event_id: str | None = None, stop_after: int | None = None) -> list:
    """Read a job's events until the server closes the stream (or `stop_after` events, then hang up)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events = []
    with httpx.Client(base_url=stack.url, timeout=60, headers=stack.http.headers) as http:
        with connect_sse(http, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            for event in source.iter_sse():
                events.append(event)
                if stop_after and len(events) >= stop_after:
                    break
    return events


def with_ids(events) -> list[str]:
    """The ids the server sent. An event sent without one reads as the last id before it (as browsers
    keep it for reconnecting), so a repeat of the previous id is not a new one."""
    ids = []
    for event in events:
        if event.id and (not ids or event.id != ids[-1]):
            ids.append(event.id)
    return ids


@pytest.fixture(scope="module")
def finished_job(stack):
    job = stack.submit(lenet_spec(training=training(epochs=3)))
    events = follow(stack, job["id"])
    return job["id"], events


def test_events_come_in_stream_order_and_end_with_done(stack, finished_job):
    job_id, events = finished_job
    kinds = [e.event for e in events]
    assert kinds[0] == "status"  # where the job stood when the follower connected
    assert kinds[-1] == "done" and kinds.count("done") == 1
    done = events[-1].json()
    assert done["id"] == job_id and done["status"] == "succeeded" and done["metrics"]["test_acc"] > 0.5
    ids = with_ids(events)
    assert [stream_id_key(i) for i in ids] == sorted({stream_id_key(i) for i in ids}), "ids rise, no repeats"
    statuses = [e.json()["status"] for e in events if e.event == "status"]
    assert "running" in statuses and statuses[-1] == "succeeded"
    # After the first event (read from SQL when the follower connected), one status per epoch end.
    epoch_ends = [e.json() for e in events[1:] if e.event == "status" and e.json()["status"] == "running"]
    assert [s["progress"]["epoch"] for s in epoch_ends if s["progress"]] == [1, 2, 3]
    # Every curve point arrived, each once, as the curve endpoint has them.
    streamed = [e.json() for e in events if e.event == "metric"]
    assert streamed == stack.curve(job_id)
    assert {p["name"] for p in streamed} >= {"train_loss", "lr", "val_loss", "val_acc"}


def test_a_reconnect_with_last_event_id_resumes_with_no_duplicates_and_no_gaps(stack):
    job = stack.submit(lenet_spec(training=training(epochs=4, batch_size=16)))
    first = follow(stack, job["id"], stop_after=8)  # hang up mid-run
    assert first[-1].event != "done"
    resumed = follow(stack, job["id"], last_event_id=first[-1].id)
    assert resumed[-1].event == "done"
    ids = with_ids(first) + with_ids(resumed)
    assert len(ids) == len(set(ids)), "no event twice"
    everything = follow(stack, job["id"], last_event_id=None)  # replayed from SQL now
    metric_ids = [e.id for e in everything if e.event == "metric"]
    got = [e.id for e in first + resumed if e.event == "metric"]
    assert got == metric_ids, "no gap: the two halves are the whole curve"


def test_followers_of_one_job_share_its_feed_each_from_where_it_resumed(stack):
    """A second follower joins while the first is following: one reader of the stream serves both."""
    job = stack.submit(lenet_spec(training=training(epochs=4, batch_size=16)))
    with ThreadPoolExecutor(3) as pool:
        whole = pool.submit(follow, stack, job["id"])
        partial = follow(stack, job["id"], stop_after=6)
        resumed = pool.submit(follow, stack, job["id"], partial[-1].id)
        late = pool.submit(follow, stack, job["id"])
        whole, resumed, late = whole.result(), resumed.result(), late.result()
    curve = [p["id"] for p in stack.curve(job["id"])]
    assert [e.id for e in whole if e.event == "metric"] == curve
    assert [e.id for e in late if e.event == "metric"] == curve
    halves = [e.id for e in partial + resumed if e.event == "metric"]
    assert halves == curve, "resumed past the feed's start: nothing twice, nothing missing"


def test_a_finished_job_replays_from_sql_when_redis_has_let_the_stream_go(stack, finished_job):
    job_id, events = finished_job
    stack.redis.delete(curve_key(job_id))
    replay = follow(stack, job_id)
    metrics = [e.json() for e in events if e.event == "metric"]
    assert [e.json() for e in replay if e.event == "metric"] == metrics
    assert replay[-1].event == "done"
    middle = [e for e in events if e.event == "metric"][10]
    after = follow(stack, job_id, last_event_id=middle.id)
    assert [e.id for e in after if e.event == "metric"] == with_ids(
        [e for e in replay if e.event == "metric"]
    )[11:]


def test_unknown_jobs_and_bad_ids_are_refused(stack):
    assert stack.http.get("/v1/jobs/nope/events").status_code == 404
    job = stack.submit(lenet_spec(training=training(epochs=1)))
    response = stack.http.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "last-event-id"]
    stack.wait_finished(job["id"])
