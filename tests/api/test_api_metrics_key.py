"""GET /metrics is open by default (a scraper inside the network) and wants a key when configured."""

from __future__ import annotations

import httpx
import pytest

from tests.live_stack import TEST_SETTINGS, LiveStack


@pytest.fixture(scope="module")
def keyed_metrics(tmp_path_factory, redis_server):
    home = tmp_path_factory.mktemp("metrics-key")
    settings = TEST_SETTINGS | {"TRAINYARD_METRICS_NEED_KEY": "true"}
    live = LiveStack(home, f"sqlite:///{home / 'trainyard.db'}", redis_server, settings=settings)
    live.start_api()
    yield live
    live.stop()


def test_metrics_need_no_key_by_default(stack):
    response = httpx.get(f"{stack.url}/metrics")
    assert response.status_code == 200 and "trainyard_queue_depth" in response.text


def test_metrics_want_a_key_when_configured(keyed_metrics):
    anonymous = httpx.get(f"{keyed_metrics.url}/metrics")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    keyed = keyed_metrics.http.get("/metrics")  # the stack's client carries its key
    assert keyed.status_code == 200 and "trainyard_queue_depth" in keyed.text
    assert httpx.get(f"{keyed_metrics.url}/healthz").status_code == 200  # health stays open
