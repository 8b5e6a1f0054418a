"""Curves thinned for charts: at most N points per series, keeping its shape (first, last, peaks, dips)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Point = dict[str, Any]


def min_max_downsample(series: Sequence[Point], max_points: int, key: str = "value") -> list[Point]:
    """First and last point, and the lowest and highest of each of (max_points - 2) // 2 equal buckets
    between them, in their original order. A loss spike or a dip in accuracy always survives, which
    averaging buckets or taking every k-th point would smooth away or skip.

    Hand-written because it is a few lines over plain dicts; the charting libraries that offer LTTB work
    on arrays and would be a dependency for this alone.
    """
    if max_points < 4:
        raise ValueError("max_points must be at least 4 (first, last, and one bucket's min and max)")
    if len(series) <= max_points:
        return list(series)
    inner = series[1:-1]
    buckets = (max_points - 2) // 2
    kept = []
    for b in range(buckets):
        bucket = inner[b * len(inner) // buckets : (b + 1) * len(inner) // buckets]
        if not bucket:
            continue
        low = min(range(len(bucket)), key=lambda i: bucket[i][key])
        high = max(range(len(bucket)), key=lambda i: bucket[i][key])
        kept += [bucket[i] for i in sorted({low, high})]
    return [series[0], *kept, series[-1]]


def downsample_curve(points: Sequence[Point], max_points: int) -> list[Point]:
    """Each named series (train_loss, val_acc, lr, ...) thinned on its own, merged back in step order."""
    series: dict[str, list[Point]] = {}
    for point in points:
        series.setdefault(point["name"], []).append(point)
    order = {id(point): index for index, point in enumerate(points)}
    thinned = [p for one in series.values() for p in min_max_downsample(one, max_points)]
    return sorted(thinned, key=lambda p: order[id(p)])
