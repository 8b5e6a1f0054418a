"""This host's GPUs as NVML (the driver's management library, through nvidia-ml-py) reads them.

NVML is not CUDA: reading it in the worker's main process does not initialise CUDA before the pool
forks. Without the NVIDIA driver there is no NVML, and no GPU to read: every answer is empty.
"""

from __future__ import annotations

import logging
from functools import cache
from types import ModuleType

from store.gpu_stats import GpuReading

log = logging.getLogger(__name__)


@cache
def _nvml() -> ModuleType | None:
    """pynvml, initialised once per process; None where NVML cannot start (no driver), asked once."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # ImportError, or NVMLError_LibraryNotFound / _DriverNotLoaded and kin
        log.info("NVML unavailable, no GPU readings: %s", exc)
        return None
    return pynvml


def read_gpus(indexes: list[int] | None = None) -> list[GpuReading]:
    """Memory and utilisation of the GPUs at NVML `indexes` (default: all); [] without NVML."""
    nvml = _nvml()
    if nvml is None:
        return []
    readings = []
    for index in range(nvml.nvmlDeviceGetCount()) if indexes is None else indexes:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        busy = nvml.nvmlDeviceGetUtilizationRates(handle).gpu  # percent of the last sample period
        name = nvml.nvmlDeviceGetName(handle)
        readings.append(
            GpuReading(
                index=index,
                name=name.decode() if isinstance(name, bytes) else name,
                memory_used_bytes=int(memory.used),
                memory_total_bytes=int(memory.total),
                utilization=busy / 100,
            )
        )
    return readings
