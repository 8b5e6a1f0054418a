"""GPU readings in Redis: each GPU worker writes its own, and /metrics reads them, from whichever host.

The API seldom runs where the GPUs are (docker-compose gives only the worker a GPU), so the readings go
through Redis: one hash, a field per host and GPU, each stamped with Redis's clock when written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import redis

GPU_STATS_KEY = "trainyard:gpu-stats"
# A worker writes its readings every heartbeat_s (2 s by default); older than this, its worker is gone.
STALE_S = 30.0


@dataclass(frozen=True)
class GpuReading:
    index: int  # NVML's device index on its host
    name: str  # e.g. "NVIDIA H100 80GB HBM3"
    memory_used_bytes: int
    memory_total_bytes: int
    utilization: float  # 0..1: the share of NVML's last sample period in which a kernel ran


def publish(client: redis.Redis, host: str, readings: list[GpuReading]) -> None:
    """Write `host`'s readings, and drop any host's that have gone stale (its worker stopped)."""
    seconds, _ = client.time()
    fresh = {f"{host}/{r.index}": json.dumps(asdict(r) | {"host": host, "at": seconds}) for r in readings}
    stale = [field for field, _, _ in _parse(client.hgetall(GPU_STATS_KEY), seconds, keep_stale=True)]
    pipe = client.pipeline(transaction=False)
    if stale:
        pipe.hdel(GPU_STATS_KEY, *stale)
    if fresh:
        pipe.hset(GPU_STATS_KEY, mapping=fresh)
    pipe.execute()


def fresh_readings(raw: dict[str, str], now_s: float) -> list[tuple[str, GpuReading]]:
    """(host, reading) for each GPU in the hash (HGETALL's answer) read within STALE_S of `now_s`."""
    return [(host, reading) for _, host, reading in _parse(raw, now_s, keep_stale=False)]


def _parse(raw: dict[str, str], now_s: float, keep_stale: bool) -> list[tuple[str, str, GpuReading]]:
    """(field, host, reading) of the fresh readings, or of the stale ones with `keep_stale`."""
    found = []
    for field, text in raw.items():
        value: dict[str, Any] = json.loads(text)
        host, at = value.pop("host"), value.pop("at")
        if (now_s - at > STALE_S) == keep_stale:
            found.append((field, host, GpuReading(**value)))
    return found
