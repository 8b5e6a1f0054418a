"""Sweeps through the service: trials are jobs a worker trains, a pruned trial ends early and its worker
starts the next one at once, and followers hear the sweep move until it is done."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from tests.factories import lenet_spec, training

EPOCHS = 4
# Two rates that learn digits and two that barely move in 4 epochs. Seed 4 shuffles the grid to fast, fast,
# slow, slow: each slow one is then far below the fast ones' median at its first epoch, and pruned.
GOOD, BAD = [0.1, 0.05], [1e-4, 1.1e-4]
SEED = 4


def sweep_body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "pruned lr search",
        "base": lenet_spec(training=training(epochs=EPOCHS)),
        "space": {"optimizer.lr": {"choice": GOOD + BAD}},
        "method": "grid",
        "parallelism": 1,
        "early_stopping": {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        "seed": SEED,
    } | fields


def wait_sweep(stack, sweep_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep = stack.http.get(f"/v1/sweeps/{sweep_id}").json()
        if sweep["status"] != "running":
            return sweep
        time.sleep(0.2)
    raise TimeoutError(f"sweep {sweep_id} still running: {sweep}\n{stack.diagnostics()}")


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_pruned_trial_stops_early_and_its_worker_starts_the_next_within_seconds(stack):
    response = stack.http.post("/v1/sweeps", json=sweep_body())
    assert response.status_code == 201, response.text
    sweep = wait_sweep(stack, response.json()["id"])
    assert sweep["status"] == "succeeded", sweep
    trials = sweep["trials"]
    assert len(trials) == 4 and sweep["trial_epochs"] == sum(t["epochs"] for t in trials)

    assert [t["params"]["optimizer.lr"] for t in trials] == GOOD + BAD[::-1]
    pruned = [trial for trial in trials if trial["status"] == "pruned"]
    # The slow ones for sure; the second fast one too, if it is behind the first at its first epoch.
    outcomes = [(t["params"], t["status"]) for t in trials]
    assert {t["params"]["optimizer.lr"] for t in pruned} >= set(BAD), outcomes
    for trial in pruned:
        assert trial["epochs"] < EPOCHS
        job = stack.job(trial["job_id"])
        assert job["status"] == "pruned" and job["progress"]["epoch"] == trial["epochs"]
        assert job["runs"] == []  # a pruned trial keeps no model
        if trial["number"] + 1 < len(trials):  # the next trial started on the freed worker at once
            following = stack.job(trials[trial["number"] + 1]["job_id"])
            gap = moment(following["started_at"]) - moment(job["finished_at"])
            assert gap.total_seconds() < 5, gap
    assert sweep["best"]["params"]["optimizer.lr"] in GOOD
    assert sweep["best"]["objective"] == max(t["objective"] for t in trials if t["status"] == "succeeded")
    assert set(sweep["importances"] or {"optimizer.lr": 1.0}) == {"optimizer.lr"}


def test_a_follower_hears_the_sweep_move_then_done(stack):
    body = sweep_body(space={"optimizer.lr": {"choice": [0.1]}}, early_stopping=None, name="followed")
    sweep = stack.http.post("/v1/sweeps", json=body).json()
    events = []
    with stack.http.stream("GET", f"/v1/sweeps/{sweep['id']}/events", timeout=120) as stream:
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((event, json.loads(line.removeprefix("data: "))))
                if event == "done":
                    break
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"sweep"}
    statuses = [data["trials"][0]["status"] for _, data in events if data["trials"]]
    assert statuses[-1] == "succeeded" and len(set(statuses)) >= 2  # it moved while followed
    assert events[-1][1]["status"] == "succeeded"


def test_an_ensemble_from_a_sweep_reports_the_best_single_trial_beside_it(stack):
    body = sweep_body(space={"optimizer.lr": {"choice": [0.1, 0.05, 0.02]}}, early_stopping=None, name="pool")
    sweep = wait_sweep(stack, stack.http.post("/v1/sweeps", json=body).json()["id"])
    objectives = {stack.job(t["job_id"])["runs"][0]["id"]: t["objective"] for t in sweep["trials"]}
    for select in ("greedy", "top_k"):
        choice = {"from_sweep": sweep["id"], "select": select, "size": 2}
        response = stack.http.post("/v1/ensembles", json=choice)
        assert response.status_code == 201, response.text
        ensemble = wait_ensemble(stack, response.json())
        chosen = [member["run_id"] for member in ensemble["members"]]
        assert len(chosen) == 2 and set(chosen) <= set(objectives)
        if select == "top_k":  # the two best on validation
            assert set(chosen) == set(sorted(objectives, key=objectives.get)[-2:])
        if len(set(chosen)) > 1:  # chosen on validation, scored on test beside the ensemble
            best = ensemble["evaluation"]["best_single"]
            assert objectives[best["run_id"]] == max(objectives[run_id] for run_id in chosen)


def wait_ensemble(stack, ensemble: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while ensemble["status"] == "building" and time.monotonic() < deadline:
        time.sleep(0.2)
        ensemble = stack.http.get(f"/v1/ensembles/{ensemble['id']}").json()
    assert ensemble["status"] == "ready", ensemble
    return ensemble


def test_an_ensemble_from_an_unknown_sweep_or_with_members_too_is_422(in_process_api):
    api = in_process_api
    unknown = api.http.post("/v1/ensembles", json={"from_sweep": "nope", "size": 2})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "from_sweep"]
    both = api.http.post("/v1/ensembles", json={"from_sweep": "nope", "members": ["run"]})
    assert both.status_code == 422
