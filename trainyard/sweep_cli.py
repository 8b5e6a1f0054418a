"""`trainyard sweep create|show|cancel`: hyperparameter sweeps over HTTP, built on TrainyardClient."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from store.states import SweepStatus
from trainyard.client_cli import JsonOption, UrlOption, api_client, emit_json, fail, read_json_file, stdout

SweepIdArgument = Annotated[str, typer.Argument(metavar="SWEEP_ID")]
sweep_app = typer.Typer(no_args_is_help=True, help="Search hyperparameters: trials are jobs, pruned early.")


def print_sweep(sweep: dict[str, Any]) -> None:
    trials = sweep["trials"]
    stdout.print(
        Text(
            f"sweep {sweep['id']} ({sweep['method']}, {len(trials)} of {sweep['max_trials']} trials, "
            f"{sweep['trial_epochs']} trial-epochs): {sweep['status']}"
        )
    )
    if sweep.get("error"):
        stdout.print(Text(f"  error: {sweep['error']}"))
    table = Table(box=None, pad_edge=False)
    for column in ("#", "job", "status", "epochs", sweep["objective"], "params"):
        table.add_column(column)
    for trial in trials:
        objective = trial["objective"]
        table.add_row(
            str(trial["number"]),
            trial["job_id"] or "-",
            trial["status"],
            str(trial["epochs"]),
            f"{objective:.4f}" if objective is not None else "-",
            Text(", ".join(f"{path}={_value(value)}" for path, value in trial["params"].items())),
        )
    stdout.print(table)
    if best := sweep.get("best"):
        stdout.print(Text(f"best: trial {best['number']} ({sweep['objective']} {best['objective']:.4f})"))
    if importances := sweep.get("importances"):
        ranked = sorted(importances.items(), key=lambda item: -item[1])
        stdout.print(Text("importance: " + ", ".join(f"{path} {share:.2f}" for path, share in ranked)))


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@sweep_app.command("create")
def create_sweep(
    path: Annotated[Path, typer.Argument(metavar="SWEEP.json", help="the sweep as JSON; - reads stdin")],
    wait: Annotated[bool, typer.Option(help="wait until every trial has ended")] = False,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Start a sweep ({"base", "space", "method", "max_trials", ...}); prints its id and trials."""
    body = read_json_file(path)
    with api_client(url) as client:
        sweep = client.create_sweep(body)
        if wait:
            try:
                sweep = client.wait_sweep(sweep["id"])
            except TimeoutError as exc:
                raise fail(f"{exc}; see later: trainyard sweep show {sweep['id']}", 1) from None
    (emit_json if as_json else print_sweep)(sweep)
    if sweep["status"] == SweepStatus.FAILED:
        raise typer.Exit(1)


@sweep_app.command("show")
def show_sweep(
    sweep_id: SweepIdArgument, as_json: JsonOption = False, url: UrlOption = None
) -> None:
    """A sweep's trials, best trial and parameter importances."""
    with api_client(url) as client:
        sweep = client.sweep(sweep_id)
    (emit_json if as_json else print_sweep)(sweep)


@sweep_app.command("cancel")
def cancel_sweep(
    sweep_id: SweepIdArgument, as_json: JsonOption = False, url: UrlOption = None
) -> None:
    """Cancel a sweep and its queued and running trials."""
    with api_client(url) as client:
        sweep = client.cancel_sweep(sweep_id)
    (emit_json if as_json else print_sweep)(sweep)
