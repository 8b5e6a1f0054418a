"""The Celery configuration shared by the worker and by producers that only enqueue by name."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from celery import Celery

from models.spec import JobSpec
from store.settings import Settings, get_settings

TRAIN_TASK = "trainyard.train"  # one model: a job of kind "train"
ENSEMBLE_TASK = "trainyard.ensemble"  # a job of kind "ensemble": choose a strategy, train the members
FINISH_ENSEMBLE_TASK = "trainyard.finish_ensemble"  # once the members have ended: build, evaluate, finish
BUILD_ENSEMBLE_TASK = "trainyard.build_ensemble"  # an ensemble of stored runs: average, evaluate
DELIVER_WEBHOOK_TASK = "trainyard.deliver_webhook"  # one attempt at notifying a job's notify_url
QUEUE = "trainyard"  # every worker takes it: jobs that need nothing special, and every other task
GPU_QUEUE = "trainyard.gpu"  # only workers with a GPU take it: jobs whose spec says resources.gpu


def make_celery(settings: Settings) -> Celery:
    # The result backend exists for chords: an ensemble's members report to it, and the last one to end
    # triggers the ensemble's finish. Other tasks store nothing there.
    app = Celery("trainyard", broker=settings.redis_url, backend=settings.redis_url)
    transport_options = {"visibility_timeout": settings.visibility_timeout}
    app.conf.update(
        task_default_queue=QUEUE,
        # A job is acknowledged only once it has finished, so a lost worker's job is redelivered...
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # ...and a worker holds no more than the job it is running.
        worker_prefetch_multiplier=1,
        # Redis redelivers unacknowledged messages after the visibility timeout: it must outlast
        # the longest job, and Celery reads it from both option sets.
        broker_transport_options=transport_options,
        result_backend_transport_options=transport_options,
        visibility_timeout=settings.visibility_timeout,
        task_time_limit=settings.max_job_seconds,
        task_ignore_result=True,
        result_expires=settings.visibility_timeout,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


@lru_cache
def producer() -> Celery:
    return make_celery(get_settings())


def queue_for(spec: JobSpec | Mapping[str, Any]) -> str:
    """The queue a job's training goes to, chosen by what its spec requires: a queue per resource kind.

    `spec`: the JobSpec, or its JSON as stored (Job.spec; a spec stored before `resources` existed has
    none, and needs nothing)."""
    if isinstance(spec, JobSpec):
        needs_gpu = spec.resources.gpu
    else:
        needs_gpu = bool((spec.get("resources") or {}).get("gpu", False))
    return GPU_QUEUE if needs_gpu else QUEUE


def queues_for_worker(has_gpu: bool) -> list[str]:
    """What a worker takes by default: the GPU queue too when it has a GPU (which also trains anything)."""
    return [QUEUE, GPU_QUEUE] if has_gpu else [QUEUE]


def enqueue_training(job_id: str, spec: JobSpec | Mapping[str, Any]) -> None:
    producer().send_task(TRAIN_TASK, args=[job_id], queue=queue_for(spec))


def enqueue_job(
    job_id: str, kind: str, spec: JobSpec | Mapping[str, Any], celery: Celery | None = None
) -> None:
    """`spec`: the job's, which picks its queue; `celery`: the producer to send with (an API app's own);
    default the process's."""
    task = ENSEMBLE_TASK if kind == "ensemble" else TRAIN_TASK
    (celery or producer()).send_task(task, args=[job_id], queue=queue_for(spec))


def enqueue_finish_ensemble(job_id: str) -> None:
    producer().send_task(FINISH_ENSEMBLE_TASK, args=[job_id], queue=QUEUE)


def enqueue_build_ensemble(ensemble_id: str, celery: Celery | None = None) -> None:
    (celery or producer()).send_task(BUILD_ENSEMBLE_TASK, args=[ensemble_id], queue=QUEUE)


def enqueue_webhook(delivery_id: str, celery: Celery | None = None) -> None:
    (celery or producer()).send_task(DELIVER_WEBHOOK_TASK, args=[delivery_id], queue=QUEUE)
