"""NVML's readings where the machine has an NVIDIA driver; elsewhere none, and nothing fails."""

from __future__ import annotations

import pytest

from worker.nvml_reader import read_gpus


def test_nvml_reads_every_gpu_of_this_machine():
    readings = read_gpus()
    if not readings:
        pytest.skip("no NVML here (no NVIDIA driver): read_gpus() answers [] and nothing fails")
    for reading in readings:
        assert 0 < reading.memory_used_bytes <= reading.memory_total_bytes
        assert 0.0 <= reading.utilization <= 1.0
