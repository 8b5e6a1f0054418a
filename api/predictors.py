"""Predictors (ensembles, runs) kept loaded in the API process, least recently used first out, bounded in
bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from models.ensemble import EnsemblePredictor


class PredictorCache:
    """An LRU cache of built predictors by key (an ensemble id, or run_key), evicting to fit `max_bytes`.

    functools.lru_cache bounds entries by count, not by memory, and ten lenet5 members and one AlexNet
    differ a thousandfold: hence this small hand-written one. A predictor larger than the whole budget is
    built and used but not kept. Two requests missing the same ensemble at once may both build it; the
    second simply replaces the first.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, EnsemblePredictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, build: Callable[[], EnsemblePredictor]) -> EnsemblePredictor:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        predictor = build()  # outside the lock: loading weights must not stall hits on other ensembles
        if predictor.nbytes <= self.max_bytes:
            with self._lock:
                self._entries[key] = predictor
                self._entries.move_to_end(key)
                while sum(p.nbytes for p in self._entries.values()) > self.max_bytes:
                    self._entries.popitem(last=False)
        return predictor

    def forget(self, *keys: str) -> None:
        """Drop what was deleted: its memory comes back now rather than when it ages out."""
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


def run_key(run_id: str, averaged: bool = False) -> str:
    """A run's predictor in the cache: its final or its averaged weights (ensemble ids are bare hex)."""
    return f"run:{run_id}:{'averaged' if averaged else 'final'}"


def run_keys(run_ids: list[str]) -> list[str]:
    """Every key the runs' predictors may be cached under."""
    return [run_key(run_id, averaged) for run_id in run_ids for averaged in (False, True)]
