"""The Celery app of the worker: jobs_per_gpu training processes per GPU, lost jobs recovered."""

from __future__ import annotations

import logging
import os
import threading

from celery.signals import worker_process_init, worker_ready, worker_shutdown, worker_shutting_down

from store.objects import artifact_store
from store.queue import make_celery
from store.settings import get_settings
from worker import shutdown
from worker.dispatching import register_slots, unregister_slots
from worker.processes import die_with_parent

log = logging.getLogger(__name__)

app = make_celery(get_settings())
app.conf.include = ["worker.tasks"]
# Redis restarted or briefly away: the running training goes on (its curve gets a gap, counted in its
# metrics) while the consumer reconnects. Celery 6 turns this to True, which would cancel the job instead.
app.conf.worker_cancel_long_running_tasks_on_connection_loss = False

_stop_recovery = threading.Event()
# Held through each recovery round and across every fork of this process (the worker forks a new training
# process whenever one dies), so a fork never happens mid-round: a child forked while the recovery thread
# held a lock (a stream's, the log's, a connection pool's) would inherit it held by no thread and hang
# on it, never starting its next job (tests/faults/test_crash_every_time.py: once in ~6 full-suite runs).
_recovery_round = threading.Lock()
os.register_at_fork(
    before=_recovery_round.acquire,
    after_in_parent=_recovery_round.release,
    after_in_child=_recovery_round.release,  # the forking thread, the child's only one, held it
)


@worker_process_init.connect
def _init_training_process(**_) -> None:
    from billiard.process import current_process

    from store.db import reset_after_fork

    die_with_parent()  # a SIGKILLed worker must not leave its training process running
    reset_after_fork()
    settings = get_settings()
    # Each child sees only its own device: child i takes GPU i mod the GPUs, so that jobs_per_gpu
    # children share each. CUDA is first touched here, in the child, never in the parent that forks.
    if settings.gpus:
        gpus = settings.gpus.split(",")
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[(current_process().index or 0) % len(gpus)]
    if settings.threads_per_process:
        import torch

        torch.set_num_threads(settings.threads_per_process)
    artifact_store(settings).connect()


@worker_ready.connect
def _start_recovery(sender, **_) -> None:
    # The consumer's pool: one training process per slot (--concurrency), for the queues it takes (--queues;
    # all the app knows of when none is named).
    slots = sender.pool.num_processes
    queues = sorted(sender.app.amqp.queues.consume_from or sender.app.amqp.queues)
    args = (slots, queues)
    threading.Thread(target=_recovery_loop, args=args, name="recover-lost-jobs", daemon=True).start()


@worker_shutting_down.connect
def _hand_back_running_jobs(**_) -> None:
    unregister_slots()  # first: no dispatch round counts on this worker's slots any more
    shutdown.tell_training_processes()


@worker_shutdown.connect
def _stop_recovery_loop(**_) -> None:
    _stop_recovery.set()


def _recovery_loop(slots: int, queues: list[str]) -> None:
    from worker.recovery import recover_lost_jobs

    settings = get_settings()
    redis_run_id = None
    while not _stop_recovery.is_set():
        with _recovery_round:
            try:
                # Before the round's dispatch, which (the first time) gives this worker's slots their jobs.
                register_slots(slots, queues)
            except Exception:  # Redis away: the next round registers again
                log.warning("registering this worker's slots failed", exc_info=True)
            try:
                recover_lost_jobs(settings)
            except Exception:  # the database may be briefly away; try again next round
                log.exception("recovering lost jobs failed")
            try:
                redis_run_id = _requeue_if_redis_restarted(redis_run_id)
            except Exception:  # Redis away: the next round sees it back, with a new run id
                log.warning("checking whether Redis restarted failed", exc_info=True)
            if settings.gpus:
                try:
                    _publish_gpu_stats(settings.gpus)
                except Exception:  # Redis away, or a GPU fell off the bus: /metrics misses a round
                    log.warning("publishing GPU readings failed", exc_info=True)
        _stop_recovery.wait(settings.heartbeat_s)


def _publish_gpu_stats(gpus: str) -> None:
    """This worker's GPUs, read through NVML, for /metrics (store/gpu_stats.py)."""
    import socket

    from store import gpu_stats
    from store.streams import get_redis
    from worker.nvml_reader import read_gpus

    # CUDA's device numbers, as the CLI took them from CUDA_VISIBLE_DEVICES; NVML numbers the same
    # devices alike in PCI bus order (CUDA_DEVICE_ORDER=PCI_BUS_ID). UUIDs there: read every GPU.
    devices = gpus.split(",")
    readings = read_gpus([int(d) for d in devices] if all(d.strip().isdigit() for d in devices) else None)
    if readings:
        gpu_stats.publish(get_redis(), socket.gethostname(), readings)


def _requeue_if_redis_restarted(last_run_id: str | None) -> str:
    """A restarted Redis may have lost the queue: send every queued job again (duplicates are harmless,
    only one delivery can claim a job). Answers the server's run id, which changes with each restart."""
    from store.streams import get_redis
    from worker.recovery import requeue_queued_jobs

    run_id = get_redis().info("server")["run_id"]  # the process's shared client: left open
    if last_run_id is not None and run_id != last_run_id:
        log.warning("Redis restarted; queued jobs sent again: %s", requeue_queued_jobs())
    return run_id
