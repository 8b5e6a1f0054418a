"""The Celery app of the worker: one training process per GPU, lost jobs recovered."""

from __future__ import annotations

import logging
import os
import threading

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from store.queue import make_celery
from store.settings import get_settings
from trainyard.services import die_with_parent

log = logging.getLogger(__name__)

app = make_celery(get_settings())
app.conf.include = ["worker.tasks"]

_stop_recovery = threading.Event()


@worker_process_init.connect
def _init_training_process(**_) -> None:
    from billiard.process import current_process

    from store.db import reset_after_fork

    die_with_parent()  # a SIGKILLed worker must not leave its training process running
    reset_after_fork()
    # One training process per GPU: each child sees only its own device. CUDA is first touched
    # here, in the child, never in the parent that forks.
    gpus = os.environ.get("TRAINYARD_GPUS")
    if gpus:
        index = (current_process().index or 0) % len(gpus.split(","))
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.split(",")[index]
    threads = os.environ.get("TRAINYARD_THREADS_PER_PROCESS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


@worker_ready.connect
def _start_recovery(**_) -> None:
    threading.Thread(target=_recovery_loop, name="recover-lost-jobs", daemon=True).start()


@worker_shutdown.connect
def _stop_recovery_loop(**_) -> None:
    _stop_recovery.set()


def _recovery_loop() -> None:
    from worker.recovery import recover_lost_jobs

    settings = get_settings()
    while not _stop_recovery.is_set():
        try:
            recover_lost_jobs(settings)
        except Exception:  # the database may be briefly away; try again next round
            log.exception("recovering lost jobs failed")
        _stop_recovery.wait(settings.heartbeat_s)
