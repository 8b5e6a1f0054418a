"""create_app(settings): an app on its own settings, database, Redis and caches, several in one process."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.factories import lenet_spec, training

API_DIR = Path(__file__).resolve().parents[2] / "api"
# The process-wide settings and clients of store/ (the worker's): the API must reach its own app's instead.
PROCESS_WIDE = re.compile(
    r"\b(get_settings|get_engine|new_session|session_scope|get_redis|get_async_redis|producer)\("
)


def test_apps_with_different_settings_live_side_by_side(start_in_process_api):
    strict = start_in_process_api(max_page_size=3, max_epochs=1)
    loose = start_in_process_api()
    assert strict.http.get("/v1/jobs", params={"limit": 4}).status_code == 422
    assert loose.http.get("/v1/jobs", params={"limit": 4}).status_code == 200
    spec = lenet_spec(training=training(epochs=2))
    assert strict.http.post("/v1/jobs", json=spec).status_code == 422
    assert loose.http.post("/v1/jobs", json=spec).status_code == 202
    # Each has its own database and Redis: the job is queued for one app only, a key opens one app only.
    assert (strict.queued_messages(), loose.queued_messages()) == (0, 1)
    with strict.client(loose.api_key) as stranger:
        assert stranger.get("/v1/jobs").status_code == 401


def test_more_concurrent_requests_than_pooled_connections_all_answer(start_in_process_api):
    # db_pool_size 2 (4 with the overflow) under 60 concurrent requests, more than the thread pool's 40:
    # unbounded, request sessions would hold every connection while waiting for a thread (api/deps.py).
    api = start_in_process_api(db_pool_size=2)
    api.submit(lenet_spec())
    with ThreadPoolExecutor(60) as pool:
        codes = list(pool.map(lambda _: api.http.get("/v1/jobs").status_code, range(120)))
    assert codes == [200] * 120


def test_the_api_reads_no_process_wide_settings_or_clients():
    uses = [
        f"{path.relative_to(API_DIR.parent)}:{number}: {line.strip()}"
        for path in sorted(API_DIR.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PROCESS_WIDE.search(line)
    ]
    assert not uses, "\n".join(uses)
