"""Prometheus metrics: jobs, queues, training and GPUs read at scrape time, and the API's request latency."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import redis
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, case, extract, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store import gpu_stats, streams
from store.queue import GPU_QUEUE, QUEUE
from store.states import TERMINAL, TRAINING_KINDS, JobKind, JobStatus
from store.tables import Job

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
STATUSES = tuple(JobStatus)
KINDS = tuple(JobKind)
# Jobs last from seconds (digits on a GPU) to a day (max_job_seconds).
JOB_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


def _seconds_between(session: Session, end: Any, start: Any) -> ColumnElement[float]:
    """end - start in seconds, in the SQL of the two databases the project runs on."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return extract("epoch", end - start)


class JobsCollector(Collector):
    """Reads SQL (two queries) and Redis (one pipeline) on every scrape, so the numbers are never stale
    and the API keeps no state of its own: workers, not the API, see jobs start and finish."""

    def __init__(self, sessions: sessionmaker[Session], client: redis.Redis) -> None:
        self.sessions = sessions
        self.client = client

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("trainyard_backend_up", "whether the scrape could read it", labels=["backend"])
        running: list[tuple[str, int]] = []
        try:
            with self.sessions() as session:
                yield from self._job_metrics(session)
                running = self._running_jobs(session)
            # Counted from the same rows as the per-job series below, not from the GROUP BY above: each
            # query sees its own moment (READ COMMITTED), and a job that started between them would show
            # a stream lag while no job was running.
            yield GaugeMetricFamily(
                "trainyard_jobs_running", "models training now (train jobs running)", len(running)
            )
            up.add_metric(["database"], 1)
        except SQLAlchemyError:
            logger.warning("metrics: the database could not be read", exc_info=True)
            up.add_metric(["database"], 0)
        try:
            yield from self._redis_metrics(self.client, running)
            up.add_metric(["redis"], 1)
        except redis.RedisError:
            logger.warning("metrics: Redis could not be read", exc_info=True)
            up.add_metric(["redis"], 0)
        yield up

    @staticmethod
    def _job_metrics(session: Session) -> Iterator[Metric]:
        # One GROUP BY gives the counts and the duration histogram. The histogram is built here from the
        # finished jobs' rows rather than observed: the API never sees a job finish (workers do), and rows
        # of finished jobs do not change, so the counts only grow, as a histogram's must, across API
        # restarts too.
        duration = _seconds_between(session, Job.finished_at, Job.started_at)
        rows = session.execute(
            select(
                Job.status,
                Job.kind,
                func.count(),
                func.count(duration),
                func.coalesce(func.sum(duration), 0.0),
                *(func.sum(case((duration <= bound, 1), else_=0)) for bound in JOB_DURATION_BUCKETS),
            ).group_by(Job.status, Job.kind)
        ).all()
        found = {(status, kind): tuple(rest) for status, kind, *rest in rows}
        keys = sorted({(s, k) for s in STATUSES for k in KINDS} | found.keys())
        empty = (0, 0, 0.0, *(0 for _ in JOB_DURATION_BUCKETS))

        jobs = GaugeMetricFamily("trainyard_jobs", "jobs in each state", labels=["status", "kind"])
        durations = HistogramMetricFamily(
            "trainyard_job_duration_seconds",
            "finished jobs, finished_at - started_at (the last attempt's start)",
            labels=["status", "kind"],
        )
        for status, kind in keys:
            count, timed, total, *cumulative = found.get((status, kind), empty)
            jobs.add_metric([status, kind], count)
            if status in TERMINAL:
                buckets = [(str(b), n or 0) for b, n in zip(JOB_DURATION_BUCKETS, cumulative, strict=True)]
                # float(): PostgreSQL's EXTRACT answers numeric, which arrives as Decimal.
                durations.add_metric([status, kind], [*buckets, ("+Inf", timed)], sum_value=float(total))
        yield jobs
        yield durations

    @staticmethod
    def _running_jobs(session: Session) -> list[tuple[str, int]]:
        running = (Job.status == JobStatus.RUNNING, Job.kind.in_(TRAINING_KINDS))
        rows = session.execute(select(Job.id, Job.spec).where(*running))
        return [(job_id, int(spec["training"]["batch_size"])) for job_id, spec in rows]

    @staticmethod
    def _redis_metrics(client: redis.Redis, running: list[tuple[str, int]]) -> Iterator[Metric]:
        pipe = client.pipeline(transaction=False)
        pipe.time()  # Redis's clock: the one that stamped the stream ids
        pipe.llen(QUEUE)
        pipe.llen(GPU_QUEUE)
        pipe.hgetall(gpu_stats.GPU_STATS_KEY)
        for job_id, _ in running:
            pipe.hget(streams.progress_key(job_id), "steps_per_s")
            pipe.xrevrange(streams.curve_key(job_id), count=1)
        (seconds, micros), depth, gpu_depth, gpus, *per_job = pipe.execute()
        now_ms = seconds * 1000 + micros / 1000

        queues = GaugeMetricFamily(
            "trainyard_queue_depth",
            "tasks waiting in each Celery queue (trainyard.gpu: GPU-only jobs)",
            labels=["queue"],
        )
        queues.add_metric([QUEUE], depth)
        queues.add_metric([GPU_QUEUE], gpu_depth)
        yield queues
        yield from _gpu_metrics(gpu_stats.fresh_readings(gpus, seconds))
        throughput = GaugeMetricFamily(
            "trainyard_training_samples_per_second",
            "training samples per second of each running job, averaged over its current attempt",
            labels=["job_id"],
        )
        lag = GaugeMetricFamily(
            "trainyard_stream_lag_seconds",
            "time since a running job last wrote to its curve stream",
            labels=["job_id"],
        )
        answers = zip(running, per_job[::2], per_job[1::2], strict=True)
        for (job_id, batch_size), steps_per_s, newest in answers:
            if steps_per_s is not None:
                # The loop knows steps, not samples; the last batch of an epoch may be smaller.
                throughput.add_metric([job_id], float(steps_per_s) * batch_size)
            if newest:
                ms, _ = streams.stream_id_key(newest[0][0])
                lag.add_metric([job_id], max(now_ms - ms, 0) / 1000)
        yield throughput
        yield lag


def _gpu_metrics(readings: list[tuple[str, gpu_stats.GpuReading]]) -> Iterator[Metric]:
    """Each GPU worker's GPUs, as its last reading through NVML says; no series at all without one."""
    if not readings:
        return
    labels = ["host", "gpu", "name"]
    used = GaugeMetricFamily("trainyard_gpu_memory_used_bytes", "GPU memory in use (NVML)", labels=labels)
    total = GaugeMetricFamily("trainyard_gpu_memory_total_bytes", "GPU memory in all (NVML)", labels=labels)
    busy = GaugeMetricFamily(
        "trainyard_gpu_utilization_ratio",
        "share of NVML's last sample period in which a kernel ran on the GPU",
        labels=labels,
    )
    for host, reading in readings:
        values = [host, str(reading.index), reading.name]
        used.add_metric(values, reading.memory_used_bytes)
        total.add_metric(values, reading.memory_total_bytes)
        busy.add_metric(values, reading.utilization)
    yield from (used, total, busy)


def route_template(scope: Scope) -> str:
    """The matched route's path with its {placeholders}: bounded label values, unlike raw paths."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"


class RequestMetricsMiddleware:
    """Times each HTTP request to the end of its response. Plain ASGI rather than BaseHTTPMiddleware,
    which would wrap streamed responses (SSE) in a task; a stream's whole life is what it measures."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500  # what the client gets if the app raises before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = route_template(scope)
            if route != METRICS_PATH:
                self.histogram.labels(scope["method"], route, str(status_code)).observe(
                    time.perf_counter() - started
                )


def install_metrics(app: FastAPI, sessions: sessionmaker[Session], client: redis.Redis) -> None:
    """A registry per app: create_app() may run several times in one process (tests), and the default
    registry would refuse the same collectors twice."""
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    registry.register(JobsCollector(sessions, client))
    latency = Histogram(
        "trainyard_http_request_duration_seconds",
        "API requests by method, route template and status code",
        ["method", "route", "status"],
        registry=registry,
    )
    app.state.metrics_registry = registry
    app.add_middleware(RequestMetricsMiddleware, histogram=latency)
