"""The HTTP commands of `trainyard` (submit, jobs, logs, cancel, ensemble), built on TrainyardClient."""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from store.states import EnsembleStatus, JobStatus
from trainyard.client import TrainyardClient, TrainyardConnectionError, TrainyardError

PANEL = "Use the API (over HTTP)"
# Client mistakes: a bad spec or argument, an id that does not exist, a body over the limit.
BAD_INPUT = (400, 404, 413, 422)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="TRAINYARD_URL",
        show_default=False,
        help="the API (default: where the local `trainyard up` serves, else http://127.0.0.1:8000)",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout and nothing else")]

# soft_wrap: lines are not broken at 80 columns when the output goes to a pipe or a file.
stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)
ensemble_app = typer.Typer(no_args_is_help=True, help="Combine stored runs and predict with them.")
dataset_app = typer.Typer(no_args_is_help=True, help="Upload your own data (.npz) and list it.")


def register(app: typer.Typer) -> None:
    """Add the HTTP commands to the `trainyard` app."""
    for command in (submit, jobs, logs, cancel):
        app.command(rich_help_panel=PANEL)(command)
    app.add_typer(ensemble_app, name="ensemble", rich_help_panel=PANEL)
    app.add_typer(dataset_app, name="dataset", rich_help_panel=PANEL)
    from trainyard.sweep_cli import sweep_app  # it imports this module's helpers

    app.add_typer(sweep_app, name="sweep", rich_help_panel=PANEL)


def emit_json(document: Any) -> None:
    """One JSON document per line on stdout; flushed, so that a reader sees a stream as it comes."""
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int) -> typer.Exit:
    stderr.print(Text(f"error: {message}", style="red"))
    return typer.Exit(code)


@contextmanager
def api_client(url: str | None) -> Iterator[TrainyardClient]:
    """A client whose API errors end the command with a readable message instead of a traceback."""
    client = TrainyardClient(url)
    try:
        yield client
    except TrainyardConnectionError as exc:
        raise fail(
            f"{exc.detail}\nIs the API running there? Start it with `trainyard up`, or set "
            "--url / TRAINYARD_URL.",
            1,
        ) from None
    except TrainyardError as exc:
        lines = [f"{path}: {msg}" for path, msg in exc.field_errors()] or [str(exc.detail)]
        message = f"the API answered {exc.status_code}" + "".join(f"\n  {line}" for line in lines)
        raise fail(message, 2 if exc.status_code in BAD_INPUT else 1) from None
    finally:
        client.close()


def read_json_file(path: Path) -> Any:
    """A JSON file ("-" reads stdin); a missing or broken file is bad input (exit 2)."""
    try:
        return json.loads(sys.stdin.read() if str(path) == "-" else path.read_text())
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}", 2) from None
    except ValueError as exc:
        raise fail(f"{path} is not JSON: {exc}", 2) from None


# ---------------------------------------------------------------- following jobs


def merged_events(client: TrainyardClient, job_ids: list[str]) -> Iterator[tuple[str, str, str | None, Any]]:
    """(job id, event, id, data) from several jobs' streams as they come, until each has sent `done`."""
    inbox: queue.Queue = queue.Queue()

    def pump(job_id: str) -> None:
        try:
            for event in client.events(job_id):
                inbox.put((job_id, *event))
        except Exception as exc:  # handed to the main thread, which raises it there
            inbox.put((job_id, "error", None, exc))
        inbox.put((job_id, None, None, None))

    for job_id in job_ids:
        threading.Thread(target=pump, args=(job_id,), daemon=True).start()
    streaming = len(job_ids)
    while streaming:
        job_id, event, event_id, data = inbox.get()
        if event is None:
            streaming -= 1
        elif event == "error":
            raise data
        else:
            yield job_id, event, event_id, data


class EtaColumn(ProgressColumn):
    """The server's estimate of the time left, counted down between its updates (until the first one:
    rich's own, from the steps so far)."""

    def render(self, task) -> Text:
        eta_s, at = task.fields.get("eta_s"), task.fields.get("eta_at")
        left = task.time_remaining if eta_s is None or at is None else eta_s - (time.monotonic() - at)
        if task.finished or left is None:
            return Text("eta  -:--", style="progress.remaining")
        left = max(0, round(left))
        return Text(f"eta {left // 60:2d}:{left % 60:02d}", style="progress.remaining")


def progress_bars() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        TextColumn("epoch {task.fields[epoch]}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("val_acc {task.fields[val_acc]}"),
        EtaColumn(),
        TextColumn("{task.fields[status]}"),
        # On stderr: stdout keeps only the job id and the outcome, for whoever reads it.
        console=stderr,
    )


def bar_update(data: dict[str, Any], event: str, epochs: int) -> dict[str, Any]:
    """The fields of a job's bar that one event (metric, status or done) changes."""
    fields: dict[str, Any] = {}
    if event == "metric":
        fields["completed"] = data["step"]
        if data["epoch"] > 0:
            # Points carry step and fractional epoch: their ratio gives the total before the first status.
            fields |= {
                "total": round(data["step"] / data["epoch"] * epochs),
                "epoch": _epoch(data["epoch"], epochs),
            }
        names = {"train_loss": "loss", "val_acc": "val_acc"}
        if data["name"] in names:
            fields[names[data["name"]]] = f"{data['value']:.4f}"
        return fields
    progress, metrics = data.get("progress") or {}, data.get("metrics") or {}
    if progress.get("steps"):
        fields |= {"total": progress["steps"], "completed": progress.get("step", 0)}
    if progress.get("epochs"):
        fields["epoch"] = _epoch(progress.get("epoch", 0), progress["epochs"])
    if "eta_s" in progress:
        fields |= {"eta_s": progress["eta_s"], "eta_at": time.monotonic()}
    if "train_loss" in metrics:
        fields["loss"] = f"{metrics['train_loss']:.4f}"
    if "val_acc" in metrics:
        fields["val_acc"] = f"{metrics['val_acc']:.4f}"
    if data.get("status"):
        fields["status"] = data["status"]
    if data.get("status") == JobStatus.SUCCEEDED and progress.get("steps"):
        fields["completed"] = progress["steps"]
    return fields


def _epoch(epoch: float, epochs: float) -> str:
    return f"{epoch:.1f}/{epochs:g}"


def follow(client: TrainyardClient, job: dict[str, Any], as_json: bool) -> dict[str, Any]:
    """Stream a job (an ensemble job: its members, one bar each) until it ends; the job as it ended."""
    members = job.get("members") or []
    watched = [job["id"], *(member["id"] for member in members)]
    final: dict[str, Any] = job
    if as_json:
        for job_id, event, event_id, data in merged_events(client, watched):
            emit_json({"job": job_id, "event": event, "id": event_id, "data": data})
            final = data if (job_id, event) == (job["id"], "done") else final
        return final
    with progress_bars() as bars:
        blank = {"epoch": "-", "loss": "-", "val_acc": "-", "status": job["status"], "total": None}
        tasks: dict[str, TaskID] = {}
        for member in members:
            tasks[member["id"]] = bars.add_task(f"member {member['member']}", **blank)
        if not members:
            tasks[job["id"]] = bars.add_task(escape(job["name"]), **blank)
        for job_id, event, _, data in merged_events(client, watched):
            if job_id == job["id"] and event == "done":
                final = data
            if job_id in tasks and event in ("metric", "status", "done"):
                bars.update(tasks[job_id], **bar_update(data, event, job["spec"]["training"]["epochs"]))
    return final


def print_outcome(client: TrainyardClient, job: dict[str, Any]) -> None:
    """The end of a job in a few lines: status, time, final metrics, stored runs, the ensemble's gain."""
    took = ""
    if job.get("started_at") and job.get("finished_at"):
        seconds = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
        took = f" in {seconds.total_seconds():.1f} s"
    style = {JobStatus.SUCCEEDED: "green", JobStatus.FAILED: "red"}.get(job["status"], "yellow")
    stdout.print(Text(f"job {job['id']} {job['status']}{took}", style=style))
    if job.get("error"):
        stdout.print(Text(f"  error: {job['error']}"))
    shown = ("test_acc", "best_val_acc", "val_acc", "val_loss", "train_loss")
    metrics = [f"{name} {job['metrics'][name]:.4f}" for name in shown if name in (job.get("metrics") or {})]
    if metrics:
        stdout.print(Text("  " + "  ".join(metrics)))
    for run in job.get("runs") or []:
        test_acc = f"test_acc {run['test_acc']:.4f}" if run.get("test_acc") is not None else ""
        stdout.print(Text(f"  run {run['id']} (member {run['member']}, seed {run['seed']}) {test_acc}"))
    if job.get("ensemble_id"):
        print_ensemble(client.ensemble(job["ensemble_id"]))


# ---------------------------------------------------------------- job commands


def submit(
    spec_file: Annotated[
        Path, typer.Argument(metavar="SPEC.json", help='a JobSpec as JSON; "-" reads stdin')
    ],
    follow_it: Annotated[
        bool,
        typer.Option("--follow", "-f", help="show progress until the job ends; exit 1 unless it succeeds"),
    ] = False,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Submit a training job; prints its id."""
    spec = read_json_file(spec_file)
    with api_client(url) as client:
        job = client.submit(spec)
        if as_json:
            emit_json(job)
        else:
            stdout.print(job["id"])
        if not follow_it:
            return
        try:
            job = follow(client, job, as_json)
        except KeyboardInterrupt:
            raise fail(
                f"stopped following; job {job['id']} goes on (trainyard cancel {job['id']})", 130
            ) from None
        if not as_json:
            print_outcome(client, job)
    if job["status"] != JobStatus.SUCCEEDED:
        raise typer.Exit(1)


def jobs(
    status: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or cancelled")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="at most this many, newest first")] = 20,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """List jobs, newest first."""
    with api_client(url) as client:
        page = client.jobs(status=status, limit=limit)
    if as_json:
        emit_json(page)
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "name", "kind", "status", "epoch", "val_acc", "test_acc", "created"):
        table.add_column(column, no_wrap=column in ("id", "status", "created"))
    for job in page["items"]:
        metrics, progress = job["metrics"], job["progress"]
        table.add_row(
            job["id"],
            Text(job["name"]),
            job["kind"],
            job["status"],
            f"{progress['epoch']:g}/{progress['epochs']:g}",
            _number(metrics.get("val_acc")),
            _number(metrics.get("test_acc")),
            job["created_at"][:19].replace("T", " "),
        )
    print_table(table)


def print_table(table: Table) -> None:
    # Piped, a table takes the width it needs instead of 80 columns that would fold the ids.
    console = stdout if stdout.is_terminal else Console(highlight=False, width=250)
    console.print(table)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def logs(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    follow_it: Annotated[
        bool, typer.Option("--follow", "-f", help="stream new points until the job ends")
    ] = False,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """The job's curve, one line per point (an ensemble job: its members' curves)."""
    with api_client(url) as client:
        job = client.job(job_id)
        members = {m["id"]: f"member {m['member']}  " for m in job.get("members") or []}
        curves = list(members) or [job_id]
        if follow_it:
            for source, event, _, data in merged_events(client, curves):
                if event == "metric":
                    print_point(data, members.get(source, ""), source, as_json)
            return
        for source in curves:
            for point in client.metrics(source)["points"]:
                print_point(point, members.get(source, ""), source, as_json)


def print_point(point: dict[str, Any], prefix: str, job_id: str, as_json: bool) -> None:
    if as_json:
        emit_json({"job": job_id} | point)
    else:
        where = f"{prefix}step {point['step']:>6}  epoch {point['epoch']:6.2f}"
        stdout.print(Text(f"{where}  {point['name']:<10} {point['value']:.6g}"))


def cancel(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Stop a queued or running job (an ensemble job: with its members)."""
    with api_client(url) as client:
        job = client.cancel(job_id)
    if as_json:
        emit_json(job)
    elif job["status"] == JobStatus.CANCELLED:
        stdout.print(Text(f"job {job['id']} cancelled"))
    else:  # running: the training loop reads the flag at its next curve flush
        stdout.print(Text(f"cancel requested: job {job['id']} ({job['status']}) stops within a few steps"))


# ---------------------------------------------------------------- ensembles


def print_ensemble(ensemble: dict[str, Any]) -> None:
    members = len(ensemble["members"])
    stdout.print(
        Text(f"ensemble {ensemble['id']} ({ensemble['method']} of {members} members): {ensemble['status']}")
    )
    if ensemble.get("error"):
        stdout.print(Text(f"  error: {ensemble['error']}"))
    evaluation = ensemble.get("evaluation") or {}
    if "ensemble_accuracy" in evaluation:
        accuracies = ", ".join(f"{a:.4f}" for a in evaluation.get("member_accuracies", []))
        mean, accuracy, gain = (evaluation[k] for k in ("mean_member_accuracy", "ensemble_accuracy", "gain"))
        stdout.print(Text(f"  member accuracies  {accuracies}  (mean {mean:.4f})"))
        stdout.print(Text(f"  ensemble accuracy  {accuracy:.4f}  (gain {gain:+.4f})"))


@ensemble_app.command("create")
def create_ensemble(
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN_ID...", help="stored runs (see a job's runs)")],
    method: Annotated[str, typer.Option(help="mean_probs, mean_logits or weights")] = "mean_probs",
    name: Annotated[str | None, typer.Option(help="a name to find it by")] = None,
    wait: Annotated[bool, typer.Option(help="wait for its evaluation on the test split")] = True,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Combine stored runs into an ensemble; prints its id and, once evaluated, its accuracy."""
    with api_client(url) as client:
        ensemble = client.create_ensemble(run_ids, method=method, name=name)
        if wait:
            try:
                ensemble = client.wait_ensemble(ensemble["id"])
            except TimeoutError as exc:
                raise fail(f"{exc}; see later: trainyard ensemble show {ensemble['id']}", 1) from None
    if as_json:
        emit_json(ensemble)
    else:
        print_ensemble(ensemble)
    if ensemble["status"] == EnsembleStatus.FAILED:
        raise typer.Exit(1)


@ensemble_app.command("show")
def show_ensemble(
    ensemble_id: Annotated[str, typer.Argument(metavar="ENSEMBLE_ID")],
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """An ensemble's members, status and evaluation."""
    with api_client(url) as client:
        ensemble = client.ensemble(ensemble_id)
    if as_json:
        emit_json(ensemble)
    else:
        print_ensemble(ensemble)


@ensemble_app.command("predict")
def predict(
    ensemble_id: Annotated[str, typer.Argument(metavar="ENSEMBLE_ID")],
    inputs_file: Annotated[
        Path,
        typer.Argument(
            metavar="INPUTS", help='N×C×H×W inputs: a .npy file, or JSON (a list or {"inputs": ...})'
        ),
    ],
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Predict labels for raw inputs with an ensemble."""
    inputs = read_inputs(inputs_file)
    with api_client(url) as client:
        prediction = client.predict(ensemble_id, inputs)
    if as_json:
        emit_json(prediction)
        return
    table = Table("#", "label", "probability", box=None, header_style="bold")
    for index, (label, probs) in enumerate(zip(prediction["labels"], prediction["probs"], strict=True)):
        table.add_row(str(index), str(label), f"{probs[label]:.4f}")
    print_table(table)


def read_inputs(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise fail(f"cannot read {path} as .npy: {exc}", 2) from None
    document = read_json_file(path)
    values = document.get("inputs") if isinstance(document, dict) else document
    try:
        return np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError):
        raise fail(f"{path}: the inputs must be an N×C×H×W array of numbers", 2) from None


# ---------------------------------------------------------------- datasets


@dataset_app.command("upload")
def upload_dataset(
    npz_file: Annotated[Path, typer.Argument(metavar="FILE.npz", help="x (N×C×H×W or N×H×W) and y (labels)")],
    name: Annotated[str | None, typer.Option(help="a label for it (default: the file's name)")] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Upload an .npz; prints its id as the last word (a spec names it: {"name": "upload", "id": ...})."""
    try:
        content = npz_file.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {npz_file}: {exc.strerror}", 2) from None
    with api_client(url) as client:
        dataset = client.upload_dataset(content, name or npz_file.stem)
    if as_json:
        emit_json(dataset)
        return
    shape = "×".join(map(str, dataset["input_shape"]))
    stdout.print(
        Text(f"{dataset['name']}: {dataset['n']} samples of {shape}, {dataset['num_classes']} classes")
    )
    stdout.print(Text(f"dataset id: {dataset['id']}"))


@dataset_app.command("list")
def list_datasets(as_json: JsonOption = False, url: UrlOption = None) -> None:
    """Your uploaded datasets, newest first."""
    with api_client(url) as client:
        items = client.datasets(limit=100)["items"]
    if as_json:
        emit_json(items)
        return
    table = Table("id", "name", "samples", "shape", "classes", "uploaded", box=None, header_style="bold")
    for d in items:
        shape, uploaded = "×".join(map(str, d["input_shape"])), d["created_at"][:19].replace("T", " ")
        table.add_row(d["id"], d["name"], str(d["n"]), shape, str(d["num_classes"]), uploaded)
    print_table(table)
