"""`trainyard worker`'s processes and queues, as it chooses them from the GPUs it was given (no GPU needed:
the choice reads TRAINYARD_GPUS, which the command fills in from the GPUs it counts)."""

from __future__ import annotations

from typing import Any

from store.settings import Settings
from trainyard.cli import worker_layout


def settings(**fields: Any) -> Settings:
    """The defaults, whatever this shell sets, and `fields`."""
    return Settings(**{"device": "auto", "worker_queues": None, "jobs_per_gpu": 1, "gpus": None} | fields)


def test_jobs_per_gpu_processes_on_every_gpu_and_the_gpu_queue_beside_the_default():
    assert worker_layout(settings(gpus="0,1,2,3"), None, None) == (4, "trainyard,trainyard.gpu")
    assert worker_layout(settings(gpus="0,1", jobs_per_gpu=4), None, None) == (8, "trainyard,trainyard.gpu")


def test_without_a_gpu_one_process_takes_the_default_queue_only():
    assert worker_layout(settings(gpus=None, jobs_per_gpu=4), None, None) == (1, "trainyard")
    # GPUs there, but the worker is told to train on its CPU: it is no GPU worker.
    assert worker_layout(settings(gpus="0,1", device="cpu"), None, None) == (1, "trainyard")


def test_the_command_line_and_the_setting_override_the_choice():
    assert worker_layout(settings(gpus="0,1"), 3, "trainyard.gpu") == (3, "trainyard.gpu")
    assert worker_layout(settings(worker_queues="trainyard.gpu"), None, None) == (1, "trainyard.gpu")
