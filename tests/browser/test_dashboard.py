"""The dashboard at `/`, driven in Chromium against the real API and worker: what a user clicks and sees."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Page, expect

# The README's picture (docs/dashboard.png) is this test's screenshot: `make screenshot` sets this to docs/.
# Other runs leave the working tree alone and keep it with the test's temporary files.
SCREENSHOT_DIR = os.environ.get("TRAINYARD_SCREENSHOT_DIR")
# Each chart's legend row says how many points its series has drawn.
TRAIN_LOSS = "#chart-loss .u-legend [data-series=train_loss]"
VAL_ACC = "#chart-acc .u-legend [data-series=val_acc]"
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e[-+]?\d+)?$")
TRAINING_MS = 90_000


def open_form(page: Page) -> None:
    page.goto("/#/new")
    page.wait_for_selector("#job-form")


def field(path: str) -> str:
    return f"[data-path='{path}']"


def option_values(page: Page, path: str) -> list[str]:
    return page.eval_on_selector_all(f"{field(path)} option", "options => options.map(o => o.value)")


def job_id_from_url(page: Page) -> str:
    return page.url.rsplit("/", 1)[-1]


def test_form_is_generated_from_the_catalog_and_shows_field_errors(dashboard, stack, console_errors):
    catalog = stack.http.get("/v1/catalog").json()
    open_form(dashboard)
    assert dashboard.title() == "trainyard"
    assert console_errors == []

    assert option_values(dashboard, "optimizer.type") == [o["type"] for o in catalog["optimizers"]]
    assert option_values(dashboard, "lr_schedule.type") == [s["type"] for s in catalog["schedules"]]
    assert option_values(dashboard, "dataset.name") == [d["type"] for d in catalog["datasets"]]
    assert option_values(dashboard, "model.arch") == [p["name"] for p in catalog["presets"]]
    assert option_values(dashboard, "regularization.dropout_mode") == catalog["dropout_modes"]
    nesterov = next(o for o in catalog["optimizers"] if o["type"] == "nesterov")["params"]
    dashboard.select_option(field("optimizer.type"), "nesterov")
    expect(dashboard.locator(field("optimizer.lr"))).to_have_value(str(nesterov["lr"]["default"]))
    expect(dashboard.locator(field("optimizer.momentum"))).to_have_value(str(nesterov["momentum"]["default"]))

    # A preset's own defaults, from the catalog: alexnet's optimizer, lr per optimizer and epochs.
    alexnet = next(p for p in catalog["presets"] if p["name"] == "alexnet")["defaults"]
    dashboard.select_option(field("model.arch"), "alexnet")
    expect(dashboard.locator(field("optimizer.type"))).to_have_value(alexnet["optimizer"]["type"])
    expect(dashboard.locator(field("optimizer.lr"))).to_have_value(str(alexnet["optimizer"]["lr"]))
    expect(dashboard.locator(field("training.epochs"))).to_have_value(str(alexnet["epochs"]))
    dashboard.select_option(field("optimizer.type"), "sgd")
    expect(dashboard.locator(field("optimizer.lr"))).to_have_value(str(alexnet["lr"]["sgd"]))
    dashboard.select_option(field("model.arch"), "lenet5")
    expect(dashboard.locator(field("optimizer.type"))).to_have_value("sgd")

    def job_ids() -> list[str]:
        return [job["id"] for job in stack.http.get("/v1/jobs", params={"limit": 100}).json()["items"]]

    jobs_before = job_ids()
    dashboard.fill(field("training.epochs"), "0")
    dashboard.fill(field("optimizer.lr"), "-1")
    dashboard.click("#submit-job")
    expect(dashboard.locator("[data-field='training.epochs'] .field-error")).to_contain_text("greater than")
    expect(dashboard.locator("[data-field='optimizer.lr'] .field-error")).to_contain_text("greater than 0")
    assert job_ids() == jobs_before
    # The browser logs the refused POST itself; nothing else may have gone wrong.
    assert all("422" in error for error in console_errors), console_errors


def test_train_watch_compare_and_build_an_ensemble(dashboard, stack, console_errors, tmp_path):
    page = dashboard
    open_form(page)
    page.fill("#field-name", "dashboard-nesterov")
    page.select_option(field("optimizer.type"), "nesterov")
    page.select_option(field("lr_schedule.type"), "exponential")
    page.fill(field("lr_schedule.k"), "0.2")
    page.fill(field("training.epochs"), "5")
    page.fill(field("training.batch_size"), "8")
    page.click("#submit-job")
    page.wait_for_url(re.compile(r"#/jobs/\w+$"))
    job_id = job_id_from_url(page)
    expect(page.locator(f".job-row[data-job-id='{job_id}']")).to_contain_text("dashboard-nesterov")

    # The loss curve grows while the job trains: two samples of the chart, both taken while it runs.
    page.wait_for_function(
        "sel => document.querySelector('#job-status [data-status=running]')"
        " && Number(document.querySelector(sel)?.dataset.points) > 0",
        arg=TRAIN_LOSS,
        timeout=TRAINING_MS,
    )
    first = int(page.get_attribute(TRAIN_LOSS, "data-points"))
    page.wait_for_function(
        "([sel, first]) => document.querySelector('#job-status [data-status=running]')"
        " && Number(document.querySelector(sel).dataset.points) > first",
        arg=[TRAIN_LOSS, first],
    )
    expect(page.locator("#job-progress")).to_contain_text(re.compile(r"epoch [\d.]+ / 5"))
    expect(page.locator("#job-status [data-status=succeeded]")).to_be_visible(timeout=TRAINING_MS)
    curve = stack.curve(job_id)
    train_points = str(sum(p["name"] == "train_loss" for p in curve))
    expect(page.locator(TRAIN_LOSS)).to_have_attribute("data-points", train_points)
    expect(page.locator(VAL_ACC)).to_have_attribute("data-points", "5")
    expect(page.locator(f".job-row[data-job-id='{job_id}'] [data-status=succeeded]")).to_be_visible()

    # One click: the lecture's SGD vs momentum vs Nesterov, overlaid.
    open_form(page)
    page.fill("#field-name", "lecture")
    page.fill(field("optimizer.lr"), "0.02")
    page.fill(field("training.epochs"), "2")
    page.fill(field("training.batch_size"), "32")
    page.click("#submit-lecture")
    page.wait_for_url(re.compile(r"#/compare/[\w,]+$"))
    lecture_ids = job_id_from_url(page).split(",")
    assert len(lecture_ids) == 3
    expect(page.locator("#main [data-status=succeeded]")).to_have_count(3, timeout=TRAINING_MS)
    val_acc_lines = page.locator("[data-metric=val_acc] .u-legend [data-series]")
    expect(val_acc_lines).to_have_count(3)
    for line in val_acc_lines.all():
        expect(line).to_have_attribute("data-points", "2")
    legend = page.locator("[data-metric=val_acc] .u-legend").inner_text()
    assert all(f"lecture-{rule}" in legend for rule in ("sgd", "momentum", "nesterov")), legend

    # Two jobs chosen in the list, compared: two lines on each chart.
    sgd_id = lecture_ids[0]
    for chosen in (job_id, sgd_id):
        page.check(f".job-row[data-job-id='{chosen}'] input.job-select")
    page.click("#compare-selected")
    page.wait_for_url(re.compile(r"#/compare/"))
    assert set(job_id_from_url(page).split(",")) == {job_id, sgd_id}
    loss_lines = page.locator("[data-metric=train_loss] .u-legend [data-series]")
    expect(loss_lines).to_have_count(2)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-metric=train_loss] .u-legend [data-series]')]"
        ".every(line => Number(line.dataset.points) > 0)"
    )

    # The same two jobs' models as an ensemble: members' accuracies beside the ensemble's.
    page.click("#ensemble-selected")
    expect(page.locator("#run-picker input[name=run]:checked")).to_have_count(2)
    page.click("#build-ensemble")
    page.wait_for_url(re.compile(r"#/ensembles/\w+$"))
    ensemble_id = job_id_from_url(page)
    expect(page.locator("#ensemble-evaluation")).to_be_visible(timeout=TRAINING_MS)
    evaluation = stack.http.get(f"/v1/ensembles/{ensemble_id}").json()["evaluation"]
    expect(page.locator("#ensemble-status [data-status=ready]")).to_be_visible()
    expect(page.locator(".bar-row")).to_have_count(4)  # two members, their mean, the ensemble
    shown = page.locator("#ensemble-evaluation [data-metric=ensemble_accuracy]")
    expect(shown).to_contain_text(f"{evaluation['ensemble_accuracy'] * 100:.2f}%")
    members = page.locator(".bar-row.member .bar-label").all_inner_texts()
    assert sorted(members) == ["dashboard-nesterov", "lecture-sgd"]

    # The README's picture: the first job, its curves complete.
    page.goto(f"/#/jobs/{job_id}")
    expect(page.locator("#job-status [data-status=succeeded]")).to_be_visible()
    expect(page.locator(VAL_ACC)).to_have_attribute("data-points", "5")
    screenshot_dir = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=screenshot_dir / "dashboard.png")
    assert (screenshot_dir / "dashboard.png").stat().st_size > 10_000

    # The charts answer the pointer: the values under the cursor in the legend, a drag zooms into the
    # epochs it spans, a double-click shows them all again, and the loss goes on a log axis at a click.
    loss = page.locator("#chart-loss .chart-plot")
    expect(loss.locator("canvas")).to_be_visible()
    box = loss.locator(".u-over").bounding_box()
    middle = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.6, middle)
    expect(page.locator(f"{TRAIN_LOSS} .u-value")).to_have_text(NUMBER)
    expect(loss.locator(".u-legend tr").first.locator(".u-value")).to_have_text(NUMBER)  # the epoch
    expect(loss).to_have_attribute("data-x-min", "0")
    expect(loss).to_have_attribute("data-x-max", "5")
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.8, middle, steps=4)
    page.mouse.up()
    expect(loss).not_to_have_attribute("data-x-min", "0")
    x_min, x_max = (float(loss.get_attribute(f"data-x-{end}")) for end in ("min", "max"))
    assert 2.5 < x_min < x_max < 4.5, (x_min, x_max)
    page.mouse.dblclick(box["x"] + box["width"] / 2, middle)
    expect(loss).to_have_attribute("data-x-min", "0")
    expect(loss).to_have_attribute("data-x-max", "5")
    expect(loss).to_have_attribute("data-y-min", "0")
    page.check("#chart-loss .chart-log input")
    expect(loss).to_have_attribute("data-y-scale", "log")
    lowest = min(p["value"] for p in curve if p["name"] in ("train_loss", "val_loss"))
    assert 0 < float(loss.get_attribute("data-y-min")) <= lowest
    expect(page.locator(TRAIN_LOSS)).to_have_attribute("data-points", train_points)
    assert console_errors == []


def test_an_api_key_in_the_address_is_sent_with_every_call_and_leaves_the_address(dashboard):
    with dashboard.expect_request(lambda request: "/v1/jobs" in request.url) as api_call:
        dashboard.goto("/?key=s3cret#/new")
    assert api_call.value.headers.get("authorization") == "Bearer s3cret"
    assert "s3cret" not in dashboard.url
    assert dashboard.evaluate("() => sessionStorage.getItem('trainyard.api-key')") == "s3cret"
