"""Test hook for the fault stack's worker (tests/faults/conftest.py puts this folder on its PYTHONPATH).

A job named as TRAINYARD_TEST_CRASH_JOBS_NAMED kills its training process as it starts training, on every
attempt, as a segfault or an OOM kill would. Python imports `sitecustomize` at start-up; this one wraps
`worker.training.train` as that module is first imported, before `worker.run_job` (or any other module)
takes the name. The Celery worker imports it while it boots, before it forks its training processes, so
they inherit the wrapped function. Processes that never import the training loop are untouched.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import sys

CRASH_JOBS_NAMED = os.environ.get("TRAINYARD_TEST_CRASH_JOBS_NAMED")


def crashing(train):
    @functools.wraps(train)
    def train_or_crash(spec, *args, **kwargs):
        if spec.name == CRASH_JOBS_NAMED:
            os._exit(1)
        return train(spec, *args, **kwargs)

    return train_or_crash


class WrapTrainOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "worker.training":
            return None
        sys.meta_path.remove(self)  # once, and so that the search below finds the real module
        spec = importlib.util.find_spec(fullname)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            module.train = crashing(module.train)

        spec.loader.exec_module = exec_module
        return spec


if CRASH_JOBS_NAMED:
    sys.meta_path.insert(0, WrapTrainOnImport())
