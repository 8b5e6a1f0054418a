"""The `trainyard` command: run the stack or one of its parts (HTTP client commands join the same app)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from trainyard.client_cli import register as register_client_commands
from trainyard.keys_cli import keys_app

if TYPE_CHECKING:
    from store.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="REST training-as-a-service for CNNs.")


def gpu_count() -> int:
    """Visible CUDA GPUs, counted through NVML so that this process never initialises CUDA before forking."""
    import torch

    return torch.cuda.device_count()


# Server commands.


@app.command()
def up() -> None:
    """Run the embedded stack: private Redis, migrations, a worker (training on every GPU) and the API."""
    from trainyard.stack import run_stack

    raise typer.Exit(run_stack())


@app.command()
def api(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="port; default PORT or 8000")] = None,
    migrate: Annotated[bool, typer.Option(help="run the database migrations first")] = True,
) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    from store.settings import get_settings

    if migrate:
        from store.migrate import upgrade

        upgrade()
    settings = get_settings()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port or settings.port,
        access_log=settings.access_log,
    )


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="training processes; default TRAINYARD_JOBS_PER_GPU per CUDA GPU, else 1"),
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(help="queues to take, comma-separated; default TRAINYARD_WORKER_QUEUES, else by GPU"),
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
) -> None:
    """Run a Celery worker that trains the queued jobs: jobs_per_gpu training processes on every GPU."""
    from store.settings import get_settings

    gpus = gpu_count()
    if gpus and "TRAINYARD_GPUS" not in os.environ:
        # Each pool process pins itself to one of these at start (worker/celery_app.py), process i to
        # device i mod their number, so jobs_per_gpu processes share each.
        visible = os.environ.get("CUDA_VISIBLE_DEVICES") or ",".join(str(i) for i in range(gpus))
        os.environ["TRAINYARD_GPUS"] = visible
    get_settings.cache_clear()  # the pool processes inherit these settings: read them with TRAINYARD_GPUS
    settings = get_settings()
    n, taken = worker_layout(settings, concurrency, queues)
    if not training_gpus(settings) and "OMP_NUM_THREADS" not in os.environ:
        # CPU training processes share the cores: each takes its share instead of all contending for all.
        os.environ["TRAINYARD_THREADS_PER_PROCESS"] = str(max(1, (os.cpu_count() or 1) // n))
        get_settings.cache_clear()
    from worker.celery_app import app as celery_app

    celery_app.worker_main(
        ["worker", f"--loglevel={loglevel}", f"--concurrency={n}", "--pool=prefork", f"--queues={taken}"]
    )


def training_gpus(settings: Settings) -> list[str]:
    """The GPUs a worker trains on: those it was given, unless it is told to train on its CPU."""
    return settings.gpus.split(",") if settings.gpus and settings.device != "cpu" else []


def worker_layout(settings: Settings, concurrency: int | None, queues: str | None) -> tuple[int, str]:
    """A worker's training processes and the queues it takes, unless given: jobs_per_gpu processes per GPU
    it trains on and the GPU queue beside the default one; with none, one process and the default queue."""
    from store.queue import queues_for_worker

    devices = training_gpus(settings)
    processes = concurrency or len(devices) * settings.jobs_per_gpu or 1
    return processes, queues or settings.worker_queues or ",".join(queues_for_worker(has_gpu=bool(devices)))


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from store.migrate import upgrade

    upgrade()


# HTTP client commands (submit, jobs, logs, cancel, ensemble): trainyard/client_cli.py.
register_client_commands(app)
app.add_typer(keys_app, name="keys")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
