"""The sweep form and page, driven in Chromium against the real API and worker: a tiny pruned grid on
digits, watched live to its end."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Page, expect

SCREENSHOT_DIR = os.environ.get("TRAINYARD_SCREENSHOT_DIR")
# Two rates that learn digits and two that barely move. Seed 4 shuffles the grid to fast, fast, slow,
# slow: each slow one is far below the fast ones' median at its first epoch, and pruned there.
RATES = "0.1, 0.05, 0.0001, 0.00011"
SLOW = {1e-4, 1.1e-4}
SWEEP_MS = 90_000
CURVES = "#sweep-curves .u-legend [data-series]"
LR_ROW = "#space-rows .space-row[data-field='space.optimizer.lr']"


def field(path: str) -> str:
    return f"[data-path='{path}']"


def fill_tiny_grid(page: Page) -> None:
    page.fill("#sweep-settings #field-name", "dashboard grid")
    page.select_option(f"#sweep-settings {field('method')}", "grid")
    page.fill(f"#sweep-settings {field('parallelism')}", "1")
    page.fill(f"#sweep-settings {field('seed')}", "4")
    page.select_option(field("early_stopping.type"), "median")
    page.fill(field("early_stopping.n_startup_trials"), "1")
    page.fill(field("early_stopping.n_warmup_steps"), "0")
    page.select_option(field("optimizer.type"), "sgd")
    page.fill(field("training.epochs"), "2")
    page.fill(field("training.batch_size"), "32")
    page.select_option(f"{LR_ROW} .space-kind", "choice")


def test_a_sweep_from_the_form_is_watched_live_to_its_end(dashboard, stack, console_errors, tmp_path):
    page = dashboard
    page.goto("/#/sweeps")
    page.click("#new-sweep")
    page.wait_for_selector("#sweep-form")
    fill_tiny_grid(page)

    # An empty choice is refused beside its row, and nothing is created.
    def sweep_ids() -> list[str]:
        return [sweep["id"] for sweep in stack.http.get("/v1/sweeps", params={"limit": 100}).json()["items"]]

    before = sweep_ids()
    page.fill(f"{LR_ROW} .space-values", "")
    page.click("#submit-sweep")
    expect(page.locator(f"{LR_ROW} .field-error")).to_contain_text("at least one value")
    expect(page.locator(f"{LR_ROW}.invalid")).to_be_visible()
    assert sweep_ids() == before

    page.fill(f"{LR_ROW} .space-values", RATES)
    page.click("#submit-sweep")
    page.wait_for_url(re.compile(r"#/sweeps/(?!new$)\w+$"))
    sweep_id = page.url.rsplit("/", 1)[-1]
    expect(page.locator("#sweep-status [data-status=running]")).to_be_visible()
    expect(page.locator("#sweep-cancel")).to_be_visible()

    # It ends while watched: no reload, the events carry it.
    expect(page.locator("#sweep-status [data-status=succeeded]")).to_be_visible(timeout=SWEEP_MS)
    expect(page.locator("#sweep-cancel")).to_be_hidden()
    sweep = stack.http.get(f"/v1/sweeps/{sweep_id}").json()
    trials = sweep["trials"]
    assert len(trials) == 4
    pruned = [t for t in trials if t["status"] == "pruned"]
    assert {t["params"]["optimizer.lr"] for t in pruned} >= SLOW, trials

    rows = page.locator("#sweep-trials tbody tr")
    expect(rows).to_have_count(4)
    for trial in trials:
        row = page.locator(f"#sweep-trials tr[data-trial='{trial['number']}']")
        expect(row).to_have_attribute("data-status", trial["status"])
        expect(row.locator("a")).to_have_attribute("href", f"#/jobs/{trial['job_id']}")
    pruned_rows = page.locator("#sweep-trials tr.pruned")
    assert pruned_rows.evaluate_all("rows => rows.map(r => Number(r.dataset.trial))") == [
        t["number"] for t in pruned
    ]
    expect(page.locator("#sweep-trials tr.best")).to_have_attribute(
        "data-trial", str(sweep["best"]["number"])
    )
    expect(page.locator("#sweep-tiles [data-metric=trials]")).to_contain_text("4 / 4")
    expect(page.locator("#sweep-tiles [data-metric=trial_epochs]")).to_contain_text(
        str(sweep["trial_epochs"])
    )

    # The curves: a series per trial with a point per epoch it trained, the pruned ones dashed.
    expect(page.locator(CURVES)).to_have_count(4)
    for trial in trials:
        line = page.locator(f"#sweep-curves .u-legend [data-series='trial-{trial['number']}']")
        expect(line).to_have_attribute("data-points", str(trial["epochs"]))
    dashed = page.locator("#sweep-curves .u-legend tr.dashed")
    assert dashed.evaluate_all("rows => rows.map(r => r.dataset.series)") == [
        f"trial-{t['number']}" for t in pruned
    ]

    # The learning rates spread over three decades: their scatter has a log x, a point per judged trial.
    scatter = page.locator("#sweep-scatters [data-path='optimizer.lr']")
    expect(scatter.locator(".chart-plot")).to_have_attribute("data-x-scale", "log")
    succeeded = sum(t["status"] == "succeeded" for t in trials)
    expect(scatter.locator(".u-legend [data-series=succeeded]")).to_have_attribute(
        "data-points", str(succeeded)
    )
    expect(scatter.locator(".u-legend [data-series=pruned]")).to_have_attribute(
        "data-points", str(len(pruned))
    )

    screenshot_dir = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=screenshot_dir / "sweep.png", full_page=True)

    # The list has it, finished; and an ensemble of its trials opens on the ensemble's page.
    page.goto("/#/sweeps")
    listed = page.locator("#sweep-list tbody tr").filter(has=page.locator(f"a[href='#/sweeps/{sweep_id}']"))
    expect(listed).to_contain_text("4 / 4")
    expect(listed.locator("[data-status=succeeded]")).to_be_visible()
    page.goto(f"/#/sweeps/{sweep_id}")
    page.select_option("#sweep-ensemble-select", "top_k")
    page.fill("#sweep-ensemble-size", str(succeeded))
    page.click("#sweep-ensemble")
    page.wait_for_url(re.compile(r"#/ensembles/\w+$"))
    expect(page.locator("#ensemble-status [data-status=ready]")).to_be_visible(timeout=SWEEP_MS)
    # The browser logs the refused POST itself; nothing else may have gone wrong.
    assert all("422" in error for error in console_errors), console_errors
