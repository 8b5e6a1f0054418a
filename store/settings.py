"""All configuration in one place, read from the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINYARD_", extra="ignore")

    home: Path = Field(Path("var"), description="state: SQLite database, artifacts, private Redis")
    data_dir: Path | None = Field(
        None, description="where mnist, fashion_mnist and cifar10 files are read from; default: home/data"
    )
    artifacts_url: str | None = Field(
        None,
        description="where weights, checkpoints and uploads are kept: s3://bucket/prefix (an object store "
        "every host shares) or a folder; default: home/artifacts",
    )
    s3_endpoint_url: str | None = Field(
        None, description="the S3 API's address for a store other than AWS's (MinIO: http://minio:9000)"
    )
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "TRAINYARD_DATABASE_URL")
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL", "TRAINYARD_REDIS_URL")
    )
    port: int = Field(8000, validation_alias=AliasChoices("PORT", "TRAINYARD_PORT"))
    metrics_need_key: bool = Field(False, description="GET /metrics wants an API key too")
    access_log: bool = Field(
        False, description="uvicorn's line per request; off: it costs more than a cached GET (see /metrics)"
    )
    db_pool_size: int = Field(
        20, ge=1, description="database connections a process keeps; the API serves this many at once"
    )

    # Worker behaviour.
    max_attempts: int = Field(3, ge=1, description="a job whose worker is lost this often fails")
    max_job_seconds: int = Field(24 * 3600, ge=60, description="longest job allowed")
    heartbeat_s: float = Field(2.0, gt=0, description="how often a running job proves it is alive")
    lease_s: float = Field(20.0, gt=0, description="silence after which a running job is presumed lost")
    report_every: int = Field(10, ge=1, description="steps between curve flushes to Redis")
    stream_maxlen: int = Field(100_000, ge=100, description="approximate cap of a job's Redis stream")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    retention_days: float | None = Field(
        None, gt=0, description="finished jobs older than this go, with their runs and files; unset: all kept"
    )
    keep_checkpoints: int = Field(3, ge=1, description="newest epoch checkpoints kept per job")
    gpus: str | None = Field(
        None,
        description="CUDA devices (0,1,...) a worker's training processes share, process i on device "
        "i mod their number; set by the CLI",
    )
    jobs_per_gpu: int = Field(
        1,
        ge=1,
        le=64,
        description="training processes (so jobs at once) per GPU of a worker. Unmeasured default: small "
        "jobs leave a GPU idle between kernel launches and may gain from several; measure with "
        "bench/throughput.py on the GPU machine (jobs per minute at 1, 2 and 4) before raising it",
    )
    worker_queues: str | None = Field(
        None,
        description="the queues a worker takes, comma-separated; default: trainyard and trainyard.gpu on a "
        "worker with a GPU, trainyard alone on one without",
    )
    threads_per_process: int | None = Field(
        None, ge=1, description="torch threads of each CPU training process; set by `trainyard worker`"
    )

    # Scheduling (store/dispatch.py): who gets the next free training slot.
    max_running_per_tenant: int = Field(
        0,
        ge=0,
        description="trainings a tenant may have running or sent to a worker at once; its other jobs wait in "
        "SQL until one ends (a member counts as one); 0: no limit",
    )

    # Predictions served by the API.
    max_predict_batch: int = Field(1024, ge=1, description="most inputs in one predict request (else 413)")
    max_predict_bytes: int = Field(
        64 * 2**20, ge=1024, description="largest predict request body in bytes (else 413)"
    )
    # Uploaded datasets (POST /v1/datasets).
    max_upload_bytes: int = Field(
        256 * 2**20, ge=1024, description="largest dataset upload in bytes, as sent (else 413)"
    )
    max_upload_inflated_bytes: int = Field(
        2**30, ge=1024, description="largest dataset upload once its arrays are uncompressed (else 413)"
    )
    predictor_cache_mb: int = Field(256, ge=1, description="memory for ensembles kept loaded by the API")

    # Limits, checked before anything is stored or queued (api/limits.py, api/body_limit.py).
    max_epochs: int = Field(1000, ge=1, description="most training.epochs of a job (else 422)")
    max_batch_size: int = Field(4096, ge=1, description="largest training.batch_size of a job (else 422)")
    max_members: int = Field(
        32, ge=1, description="most members of an ensemble job or of POST /v1/ensembles (else 422)"
    )
    max_params: int = Field(
        100_000_000, ge=1, description="most parameters of a job's network, counted on the meta device"
    )
    max_flops: int = Field(
        50 * 10**9, ge=1, description="most FLOPs of one sample's forward pass, counted on the meta device"
    )
    # 8 GiB: what one training process on a common 16-32 GiB worker can hold beside torch and the network;
    # every built-in dataset fits at LeNet-5's 32 px (Fashion-MNIST: 0.34 GB), CIFAR-10 at image_size 224
    # (36 GB) does not. Each training process holds its own copy: lower it with more processes per host.
    max_dataset_bytes: int = Field(
        8 * 2**30,
        ge=2**20,
        description="most bytes of a job's images as a training process holds them (else 422)",
    )
    max_active_jobs: int = Field(
        20, ge=1, description="queued plus running trainings per tenant (else 429); a member counts as one"
    )
    max_body_bytes: int = Field(
        2**20, ge=1024, description="largest request body where a route has no limit of its own (else 413)"
    )
    max_page_size: int = Field(100, ge=1, description="largest `limit` a list route accepts")
    rate_limit_per_minute: int = Field(
        1200, ge=0, description="requests an API key may make to /v1 per minute on average (else 429); 0: off"
    )
    rate_limit_burst: int = Field(
        100, ge=1, description="requests one API key may make to /v1 at once, within its per-minute rate"
    )
    idempotency_ttl_s: float = Field(
        86_400, ge=86_400, description="an Idempotency-Key's first answer is replayed this long (>= 24 h)"
    )

    job_cache_s: float = Field(
        0.25, ge=0, description="a running job's GET answer is reused this long (api/job_cache.py); 0: never"
    )

    # Event streams (GET /v1/jobs/{id}/events).
    sse_batch_s: float = Field(
        0.25, ge=0, description="an event stream sends what is new at most this often; 0: at once"
    )
    sse_heartbeat_s: float = Field(
        15.0, gt=0, description="an event stream idle this long gets a comment, so proxies keep it open"
    )

    # Webhooks (a job's notify_url).
    webhook_secret_grace_s: float = Field(
        86_400, ge=0, description="a rotated-out webhook secret keeps signing beside the new one this long"
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="longest wait for a receiver's answer")
    webhook_max_attempts: int = Field(5, ge=1, description="attempts before a delivery is failed")
    webhook_backoff_s: float = Field(1.0, gt=0, description="wait before the first retry; doubles after")
    webhook_backoff_max_s: float = Field(600.0, gt=0, description="longest wait between two attempts")
    webhook_allow_private: bool = Field(
        False, description="let notify_url reach loopback, private and link-local addresses (store/egress.py)"
    )

    @model_validator(mode="after")
    def _data_dir_under_home(self) -> Settings:
        if self.data_dir is None:
            self.data_dir = self.home / "data"
        return self

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'trainyard.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        """The local artifact store's folder (the default store; artifacts_url a folder overrides it)."""
        return (self.home / "artifacts").resolve()

    @property
    def visibility_timeout(self) -> int:
        """Redis redelivers an unacked message after this; it must outlast the longest job."""
        return self.max_job_seconds + 3600


@lru_cache
def get_settings() -> Settings:
    return Settings()
