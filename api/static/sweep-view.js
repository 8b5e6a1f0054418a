// One sweep, live: its state, the trials table, a scatter per parameter and the trials' curves, from the
// sweep's Server-Sent Events (the whole sweep at each change, then done); a trial's curve is its job's.
import { STREAM_GONE, openEventStream, request } from "./api.js";
import { errorLines } from "./ensembles.js";
import {
  TRIAL_ENDED,
  cardHead,
  describeSpec,
  formatNumber,
  formatTime,
  h,
  replaceChildren,
  statusPill,
  table,
  tiles,
} from "./dom.js";
import { createScatters, createTrialCurves, formatObjective } from "./sweep-charts.js";

const MAX_POINTS = 400;

const formatValue = (value) => (typeof value === "number" ? formatNumber(value, 4) : String(value));

function paramsText(params) {
  return Object.entries(params)
    .map(([path, value]) => `${path} = ${formatValue(value)}`)
    .join(", ");
}

/** "optimizer.lr loguniform [0.001, 0.3], training.batch_size choice [32, 64]" */
function spaceText(space) {
  return Object.entries(space)
    .map(([path, domain]) => {
      const [kind, values] = Object.entries(domain)[0];
      return `${path} ${kind} [${values.map(formatValue).join(", ")}]`;
    })
    .join(", ");
}

function trialsTable(sweep) {
  const paths = Object.keys(sweep.spec.space);
  const rows = sweep.trials.map((trial) => [
    `#${trial.number}`,
    statusPill(trial.status),
    ...paths.map((path) => formatValue(trial.params[path])),
    formatObjective(sweep.objective, trial.objective, 2),
    trial.epochs,
    trial.job_id ? h("a", { href: `#/jobs/${trial.job_id}` }, "job") : h("span", { title: trial.error }, "–"),
  ]);
  const element = table(["trial", "status", ...paths, sweep.objective, "epochs", ""], rows);
  element.id = "sweep-trials";
  // Rows told apart for tests and CSS: pruned and best ones stand out.
  element.querySelectorAll("tbody tr").forEach((row, i) => {
    const trial = sweep.trials[i];
    Object.assign(row.dataset, { trial: trial.number, status: trial.status });
    row.classList.toggle("pruned", trial.status === "pruned");
    row.classList.toggle("best", sweep.best?.number === trial.number);
  });
  return element;
}

/** Each parameter's share of the objective's variance, as bars. */
function importanceBars(importances) {
  if (!importances || !Object.keys(importances).length) return null;
  const sorted = Object.entries(importances).sort((a, b) => b[1] - a[1]);
  return h(
    "div",
    { class: "bars", id: "sweep-importances" },
    h("p", { class: "muted small" }, "parameter importance (fANOVA)"),
    sorted.map(([path, share]) =>
      h(
        "div",
        { class: "bar-row", dataset: { path } },
        h("span", { class: "bar-label", title: path }, path),
        h(
          "span",
          { class: "bar-track" },
          h("span", { class: "bar", style: `width: ${(share * 100).toFixed(1)}%` }),
        ),
        h("span", { class: "bar-value" }, `${(share * 100).toFixed(0)}%`),
      ),
    ),
  );
}

function summaryTiles(sweep) {
  const done = sweep.trials.filter((t) => TRIAL_ENDED.includes(t.status)).length;
  const best = sweep.best ? formatObjective(sweep.objective, sweep.best.objective, 2) : "–";
  return tiles(
    [
      ["method", sweep.method, "method"],
      ["objective", sweep.objective, "objective"],
      ["trials done", `${done} / ${sweep.max_trials}`, "trials"],
      ["trial epochs", sweep.trial_epochs, "trial_epochs"],
      [`best ${sweep.objective}`, best, "best"],
    ],
    { id: "sweep-tiles" },
  );
}

/** Build an ensemble of the sweep's trials: greedy or top_k, of a size; then its page. */
function ensembleAction(sweepId, notice) {
  const select = h(
    "select",
    { id: "sweep-ensemble-select", "aria-label": "selection" },
    h("option", { value: "greedy" }, "greedy (Caruana)"),
    h("option", { value: "top_k" }, "top k"),
  );
  const size = h("input", {
    type: "number",
    id: "sweep-ensemble-size",
    min: 1,
    max: 64,
    value: 3,
    "aria-label": "size",
  });
  const button = h("button", { type: "button", id: "sweep-ensemble" }, "Ensemble from this sweep");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const body = { from_sweep: sweepId, select: select.value, size: Number(size.value) };
      const ensemble = await request("/v1/ensembles", { method: "POST", body });
      window.location.hash = `#/ensembles/${ensemble.id}`;
    } catch (exc) {
      notice.textContent = errorLines(exc).join("; ");
      notice.className = "notice error";
      notice.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  return h("span", { class: "inline-action", title: "chosen on the validation split" }, select, size, button);
}

export function showSweep(main, { id }) {
  let source = null;
  let left = false;
  let scatters = null;
  let curves = null;
  let latest = null;
  const points = {}; // a trial's number: its curve of the objective, [[epoch, value], ...]
  const fetched = {}; // a trial's number: "epochs/status" when its curve was last read

  const title = h("h2", { id: "sweep-title" }, "…");
  const meta = h("p", { class: "muted mono" }, id);
  const about = h("p", { id: "sweep-about" });
  const pill = h("span", { id: "sweep-status" });
  const notice = h("p", { class: "notice", hidden: true });
  const cancelButton = h(
    "button",
    { class: "danger", hidden: true, id: "sweep-cancel", onclick: cancel },
    "Cancel",
  );
  const summary = h("div", {});
  const bestLine = h("p", { id: "sweep-best" });
  const importances = h("div", {});
  const trialsBox = h("div", {});
  const curvesPanel = h("div", { class: "card chart", id: "sweep-curves" });
  const scattersBox = h("div", { class: "charts", id: "sweep-scatters" });
  replaceChildren(
    main,
    h(
      "section",
      { class: "card" },
      cardHead(h("div", {}, title, meta), ensembleAction(id, notice), cancelButton, pill),
      about,
      summary,
      bestLine,
      importances,
      notice,
    ),
    curvesPanel,
    scattersBox,
    h("section", { class: "card" }, cardHead(h("h3", {}, "Trials")), trialsBox),
  );

  function render(sweep) {
    latest = sweep;
    title.textContent = sweep.name;
    meta.textContent =
      `${sweep.id} · created ${formatTime(sweep.created_at)}` +
      (sweep.finished_at ? ` · finished ${formatTime(sweep.finished_at)}` : "");
    about.textContent = `${describeSpec(sweep.spec.base)} · searching ${spaceText(sweep.spec.space)}`;
    replaceChildren(pill, statusPill(sweep.status));
    cancelButton.hidden = sweep.status !== "running";
    replaceChildren(summary, summaryTiles(sweep));
    replaceChildren(
      bestLine,
      sweep.best
        ? [h("b", {}, `best: trial #${sweep.best.number}`), ` · ${paramsText(sweep.best.params)}`]
        : h("span", { class: "muted" }, "no trial has succeeded yet"),
    );
    // The importances come with a sweep's own answer and its done event, not with each change.
    if (sweep.importances) replaceChildren(importances, importanceBars(sweep.importances));
    if (sweep.error) {
      notice.textContent = sweep.error;
      notice.className = "notice error";
      notice.hidden = false;
    }
    replaceChildren(trialsBox, trialsTable(sweep));
    scatters ??= createScatters(scattersBox, sweep);
    curves ??= createTrialCurves(curvesPanel, sweep);
    scatters.update(sweep.trials);
    curves.update(sweep.trials, points, sweep.best);
    readCurves(sweep);
  }

  /** Read again the curve of each trial that reported an epoch or ended since it was last read. */
  function readCurves(sweep) {
    for (const trial of sweep.trials) {
      const mark = `${trial.epochs}/${trial.status}`;
      if (!trial.job_id || !trial.epochs || fetched[trial.number] === mark) continue;
      fetched[trial.number] = mark;
      request(`/v1/jobs/${trial.job_id}/metrics?max_points=${MAX_POINTS}`)
        .then((curve) => {
          if (left) return;
          points[trial.number] = curve.points
            .filter((p) => p.name === sweep.objective)
            .map((p) => [p.epoch, p.value]);
          curves.update(latest.trials, points, latest.best);
        })
        .catch(() => delete fetched[trial.number]); // read again at the next change
    }
  }

  function follow() {
    source = openEventStream(`/v1/sweeps/${id}/events`, () => {
      notice.textContent = STREAM_GONE;
      notice.className = "notice error";
      notice.hidden = false;
    });
    source.addEventListener("sweep", (event) => render(JSON.parse(event.data)));
    source.addEventListener("done", (event) => {
      source.close();
      // Every curve read once more: the last epochs' points, whatever the events caught.
      for (const number of Object.keys(fetched)) delete fetched[number];
      render(JSON.parse(event.data));
    });
  }

  async function cancel() {
    cancelButton.disabled = true;
    try {
      render(await request(`/v1/sweeps/${id}/cancel`, { method: "POST" }));
    } catch (exc) {
      notice.textContent = exc.message;
      notice.hidden = false;
    } finally {
      cancelButton.disabled = false;
    }
  }

  request(`/v1/sweeps/${id}`)
    .then((sweep) => {
      if (left) return;
      render(sweep);
      if (sweep.status === "running") follow();
    })
    .catch((exc) => {
      replaceChildren(main, h("section", { class: "card" }, h("p", { class: "notice error" }, exc.message)));
    });

  return () => {
    left = true;
    source?.close();
    scatters?.destroy();
    curves?.destroy();
  };
}
