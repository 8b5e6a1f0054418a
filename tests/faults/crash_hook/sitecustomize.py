"""Test hook for the fault stack's processes (tests/faults/conftest.py puts this folder on their PYTHONPATH).

A job named as TRAINYARD_TEST_CRASH_JOBS_NAMED kills its training process as it starts training, on every
attempt, as a segfault or an OOM kill would. Python imports `sitecustomize` at start-up, before anything
else takes the name `worker.training.train`: wrapped here, the worker's training processes (forked from a
parent that has imported it) inherit the wrapped function.
"""

from __future__ import annotations

import functools
import os

CRASH_JOBS_NAMED = os.environ.get("TRAINYARD_TEST_CRASH_JOBS_NAMED")


def crashing(train):
    @functools.wraps(train)
    def train_or_crash(spec, *args, **kwargs):
        if spec.name == CRASH_JOBS_NAMED:
            os._exit(1)
        return train(spec, *args, **kwargs)

    return train_or_crash


if CRASH_JOBS_NAMED:
    import worker.training

    worker.training.train = crashing(worker.training.train)
