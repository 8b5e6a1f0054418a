"""Celery task entry points: thin, they receive ids and open their own sessions."""

from store.queue import TRAIN_TASK
from worker.celery_app import app
from worker.run_job import run_job


@app.task(name=TRAIN_TASK)
def train(job_id: str) -> str | None:
    return run_job(job_id)
