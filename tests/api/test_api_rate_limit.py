"""The request rate per API key: 429 with Retry-After past it, counted in Redis across API processes."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.in_process_api import InProcessApi, stack_settings
from trainyard.services import free_port

PER_MINUTE, BURST = 6, 5  # 5 at once, then one every 10 s


@pytest.fixture(scope="module")
def limited(start_in_process_api) -> InProcessApi:
    return start_in_process_api(rate_limit_per_minute=PER_MINUTE, rate_limit_burst=BURST)


def test_a_flood_from_one_key_is_refused_while_other_keys_go_on(limited: InProcessApi):
    flooder = limited.client(limited.new_key("flooder"))
    answers = [flooder.get("/v1/catalog") for _ in range(BURST + 3)]
    assert [a.status_code for a in answers] == [200] * BURST + [429] * 3
    refused = answers[-1]
    assert 1 <= int(refused.headers["retry-after"]) <= 60 / PER_MINUTE  # the next request's slot
    detail = refused.json()["detail"]
    assert detail["setting"] == "rate_limit_per_minute" and detail["limit"] == PER_MINUTE
    assert detail["burst"] == BURST and "rate_limit_burst" in detail["msg"]
    assert detail["retry_after_s"] == int(refused.headers["retry-after"])
    # Per key: another key, even of the same tenant, is counted apart.
    assert limited.client(limited.new_key("flooder")).get("/v1/jobs").status_code == 200
    assert limited.http.get("/v1/jobs").status_code == 200
    # Keyless routes are not limited, and a request without a valid key is refused before it is counted.
    for path in ("/healthz", "/openapi.json"):
        assert [flooder.get(path).status_code for _ in range(3)] == [200] * 3
    assert httpx.get(f"{limited.url}/v1/jobs").status_code == 401


def test_after_retry_after_the_key_is_admitted_again(start_in_process_api):
    api = start_in_process_api(rate_limit_per_minute=120, rate_limit_burst=2)  # one each half second
    client = api.client(api.new_key())
    for _ in range(50):  # a few requests at once are enough; bounded so it cannot spin
        refused = client.get("/v1/catalog")
        if refused.status_code == 429:
            break
    assert refused.status_code == 429, "two requests at once were never exceeded"
    assert refused.headers["retry-after"] == "1"
    time.sleep(int(refused.headers["retry-after"]))
    assert client.get("/v1/catalog").status_code == 200


def test_two_api_processes_on_one_redis_share_the_count(tmp_path, redis_server):
    # Two apps on one database and one Redis, as two API processes behind a balancer are.
    rate = {"rate_limit_per_minute": PER_MINUTE, "rate_limit_burst": BURST}
    settings = stack_settings(tmp_path, redis_server, **rate)
    first, second = InProcessApi(settings), InProcessApi(settings)
    try:
        key = first.new_key("shared")
        on_first, on_second = first.client(key), second.client(key)
        codes = [(on_first if i % 2 else on_second).get("/v1/catalog").status_code for i in range(BURST)]
        assert codes == [200] * BURST
        assert on_first.get("/v1/catalog").status_code == 429
        assert on_second.get("/v1/catalog").status_code == 429
    finally:
        first.stop()
        second.stop()


def test_requests_are_admitted_when_redis_is_unreachable(tmp_path):
    # Fail open: the active-jobs quota and the job limits (SQL) still hold; routes that need Redis fail
    # on their own, but reading the catalog, the runs and the datasets goes on.
    settings = stack_settings(tmp_path, f"redis://127.0.0.1:{free_port()}/0", rate_limit_per_minute=1)
    api = InProcessApi(settings)
    try:
        assert [api.http.get("/v1/catalog").status_code for _ in range(3)] == [200] * 3
    finally:
        api.stop()
