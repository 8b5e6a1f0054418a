"""A queue per resource kind, without a worker: a job that needs a GPU is sent to trainyard.gpu, any other
to trainyard; a sweep's trials go where their spec says. /metrics counts both queues, and shows the GPUs
that GPU workers have read (none without)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from store import gpu_stats
from store.gpu_stats import GpuReading
from store.queue import GPU_QUEUE, QUEUE
from tests.factories import lenet_spec

GPU = {"resources": {"gpu": True}}
H100 = GpuReading(
    index=0, name="NVIDIA H100", memory_used_bytes=2**30, memory_total_bytes=80 * 2**30, utilization=0.25
)


def depths(api) -> tuple[int, int]:
    return api.queued_messages(QUEUE), api.queued_messages(GPU_QUEUE)


def scrape(api) -> list:
    response = api.http.get("/metrics")
    assert response.status_code == 200
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def test_a_job_that_needs_a_gpu_goes_to_the_gpu_queue_and_others_to_the_default(in_process_api):
    api = in_process_api
    default, gpu = depths(api)
    needs_gpu = api.submit(lenet_spec(**GPU))
    assert needs_gpu["spec"]["resources"] == {"gpu": True}
    assert depths(api) == (default, gpu + 1)
    anywhere = api.submit(lenet_spec())
    assert anywhere["spec"]["resources"] == {"gpu": False}  # the default, written into the stored spec
    assert depths(api) == (default + 1, gpu + 1)


def test_a_sweeps_trials_go_to_the_queue_of_their_spec(in_process_api):
    api = in_process_api
    default, gpu = depths(api)
    body = {"base": lenet_spec(**GPU), "space": {"optimizer.lr": {"choice": [0.1, 0.01]}}, "method": "grid"}
    response = api.http.post("/v1/sweeps", json=body)
    assert response.status_code == 201, response.text
    assert depths(api) == (default, gpu + 2)


def test_metrics_count_each_queue_and_show_no_gpu_without_a_gpu_worker(in_process_api):
    api = in_process_api
    api.submit(lenet_spec(**GPU))
    samples = scrape(api)
    queued = {s.labels["queue"]: s.value for s in samples if s.name == "trainyard_queue_depth"}
    assert queued == {QUEUE: api.queued_messages(QUEUE), GPU_QUEUE: api.queued_messages(GPU_QUEUE)}
    assert queued[GPU_QUEUE] >= 1
    # No worker has written GPU readings to this Redis: no GPU series at all, and the scrape is fine.
    assert not [s for s in samples if s.name.startswith("trainyard_gpu_")]


def test_a_gpu_workers_readings_show_in_metrics_until_they_go_stale(in_process_api):
    api = in_process_api
    # Written as a GPU worker writes them (worker/celery_app.py), by hand: this machine has no GPU.
    gpu_stats.publish(api.redis, "gpu-host", [H100])
    try:
        labels = {"host": "gpu-host", "gpu": "0", "name": "NVIDIA H100"}
        shown = {
            s.name: s.value for s in scrape(api) if s.name.startswith("trainyard_gpu_") and s.labels == labels
        }
        assert shown == {
            "trainyard_gpu_memory_used_bytes": 2**30,
            "trainyard_gpu_memory_total_bytes": 80 * 2**30,
            "trainyard_gpu_utilization_ratio": 0.25,
        }
        seconds, _ = api.redis.time()
        later = seconds + gpu_stats.STALE_S + 1  # the worker stopped writing: its readings are not shown
        assert gpu_stats.fresh_readings(api.redis.hgetall(gpu_stats.GPU_STATS_KEY), later) == []
    finally:
        api.redis.delete(gpu_stats.GPU_STATS_KEY)  # the other tests here see no GPU worker
