"""A submission whose task cannot be sent (the broker away) is taken back: a 503, and nothing stays."""

from __future__ import annotations

import uuid

from tests.factories import lenet_spec
from tests.in_process_api import InProcessApi, stack_settings
from trainyard.services import start_private_redis


def test_a_job_the_broker_cannot_take_is_a_503_and_leaves_nothing_behind(tmp_path):
    server = start_private_redis(tmp_path / "redis")
    api = InProcessApi(stack_settings(tmp_path, server.url))
    try:
        before = api.submit(lenet_spec(name="while-the-broker-answers"))
        header = {"Idempotency-Key": str(uuid.uuid4())}
        server.stop()  # the broker goes away (a restarted Redis comes back empty)
        refused = api.http.post("/v1/jobs", json=lenet_spec(), headers=header)
        assert refused.status_code == 503 and "queue" in refused.json()["detail"], refused.text
        assert [job["id"] for job in api.http.get("/v1/jobs").json()["items"]] == [before["id"]]

        # The key kept no answer: sent again once the broker is back, the job is created and queued.
        server = start_private_redis(tmp_path / "redis", port=server.port)
        accepted = api.http.post("/v1/jobs", json=lenet_spec(), headers=header)
        assert accepted.status_code == 202 and "idempotent-replayed" not in accepted.headers, accepted.text
        listed = [job["id"] for job in api.http.get("/v1/jobs").json()["items"]]
        assert listed == [accepted.json()["id"], before["id"]]
        assert api.queued_messages() == 1
    finally:
        api.stop()
        server.stop()
