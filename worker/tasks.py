"""Celery task entry points: thin, they receive ids and open their own sessions."""

from celery import chord

from store.queue import (
    BUILD_ENSEMBLE_TASK,
    DELIVER_WEBHOOK_TASK,
    ENSEMBLE_TASK,
    FINISH_ENSEMBLE_TASK,
    TRAIN_TASK,
)
from worker.celery_app import app
from worker.ensemble_build import build_ensemble
from worker.ensemble_jobs import finish_ensemble_job, run_ensemble_job
from worker.run_job import run_job
from worker.shutdown import handing_back_on_sigterm
from worker.webhooks import deliver


# Results are kept (in the Redis result backend) because an ensemble's members are a chord's header:
# the chord counts them there and runs the finish once the last has returned.
@app.task(name=TRAIN_TASK, ignore_result=False)
def train(job_id: str) -> str | None:
    with handing_back_on_sigterm():
        return run_job(job_id)


@app.task(name=ENSEMBLE_TASK)
def ensemble(job_id: str) -> str | None:
    def fan_out(member_ids: list[str], queue: str) -> None:
        # Each member is a task of its own, for as many workers (processes, GPUs, hosts) as are free; the
        # finish needs no GPU, so it goes to the queue every worker takes.
        if member_ids:
            members = (train.si(member_id).set(queue=queue) for member_id in member_ids)
            chord(members)(finish_ensemble.si(job_id))
        else:  # a redelivered task whose members were all taken already
            finish_ensemble.delay(job_id)

    with handing_back_on_sigterm():  # an ensemble trained here, vectorized, is given back the same way
        return run_ensemble_job(job_id, fan_out)


@app.task(name=FINISH_ENSEMBLE_TASK)
def finish_ensemble(job_id: str) -> str | None:
    return finish_ensemble_job(job_id)


@app.task(name=BUILD_ENSEMBLE_TASK)
def build(ensemble_id: str) -> str:
    return build_ensemble(ensemble_id).status


@app.task(name=DELIVER_WEBHOOK_TASK)
def deliver_webhook(delivery_id: str) -> str | None:
    return deliver(delivery_id)
