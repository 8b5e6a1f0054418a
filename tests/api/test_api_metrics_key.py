"""GET /metrics is open by default (a scraper inside the network) and wants a key when configured."""

from __future__ import annotations

import httpx
import pytest

from tests.in_process_api import InProcessApi


@pytest.fixture(scope="module")
def keyed_metrics(start_in_process_api) -> InProcessApi:
    return start_in_process_api(metrics_need_key=True)


def test_metrics_need_no_key_by_default(in_process_api):
    response = httpx.get(f"{in_process_api.url}/metrics")
    assert response.status_code == 200 and "trainyard_queue_depth" in response.text


def test_metrics_want_a_key_when_configured(keyed_metrics):
    anonymous = httpx.get(f"{keyed_metrics.url}/metrics")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    keyed = keyed_metrics.http.get("/metrics")  # the stack's client carries its key
    assert keyed.status_code == 200 and "trainyard_queue_depth" in keyed.text
    assert httpx.get(f"{keyed_metrics.url}/healthz").status_code == 200  # health stays open
