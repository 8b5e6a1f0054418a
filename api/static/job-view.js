// One job, live: progress and loss/accuracy/learning-rate curves that grow as the worker reports them,
// from the job's Server-Sent Events (metric, status, done); a finished job's stream replays its curve.
import { STREAM_GONE, openEventStream, request, withKey } from "./api.js";
import { createChart, PALETTE } from "./chart.js";
import {
  TERMINAL,
  describeSpec,
  formatDuration,
  formatNumber,
  formatPercent,
  formatTime,
  h,
  cardHead,
  replaceChildren,
  statusPill,
  table,
  tiles,
} from "./dom.js";

const TILES = [
  ["train_loss", "train loss", formatNumber],
  ["val_loss", "val loss", formatNumber],
  ["val_acc", "val acc", formatPercent],
  ["best_val_acc", "best val acc", formatPercent],
  ["test_acc", "test acc", formatPercent],
];

// The job's charts, each with its panel's id and the metrics it draws; x is the epoch, up to the planned.
const CHARTS = [
  {
    id: "chart-loss",
    title: "Loss",
    yMin: 0,
    logYToggle: true,
    series: [
      { name: "train_loss", label: "train", stroke: PALETTE[0], smooth: true },
      { name: "val_loss", label: "validation", stroke: PALETTE[1], markers: true },
    ],
  },
  {
    id: "chart-acc",
    title: "Validation accuracy",
    yMin: 0,
    yMax: 1,
    yFormat: (v) => formatPercent(v, 0),
    series: [{ name: "val_acc", label: "validation", stroke: PALETTE[2], markers: true }],
  },
  {
    id: "chart-lr",
    title: "Learning rate",
    yMin: 0,
    logYToggle: true,
    series: [{ name: "lr", label: "lr", stroke: PALETTE[3] }],
  },
];

function progressText(progress, status) {
  if (!progress || !progress.epochs) return status === "queued" ? "waiting for a worker" : "";
  const parts = [`epoch ${formatNumber(progress.epoch, 3)} / ${progress.epochs}`];
  if (progress.steps) parts.push(`step ${progress.step} / ${progress.steps}`);
  if (status === "running" && progress.eta_s !== null && progress.eta_s !== undefined) {
    parts.push(`ETA ${formatDuration(progress.eta_s)}`);
  }
  return parts.join(" · ");
}

function specRows(spec) {
  const describe = (block) =>
    Object.entries(block || {})
      .filter(([, value]) => value !== null)
      .map(([key, value]) => `${key} ${typeof value === "object" ? JSON.stringify(value) : value}`)
      .join(", ");
  return [
    ["data", describe(spec.dataset)],
    ["model", describe(spec.model)],
    ["optimizer", describe(spec.optimizer)],
    ["lr schedule", describe(spec.lr_schedule)],
    ["regularization", describe(spec.regularization)],
    ["training", describe(spec.training)],
    ["ensemble", describe(spec.ensemble)],
  ].filter(([, text]) => text);
}

function runsTable(job) {
  if (!job.runs.length) return null;
  const rows = job.runs.map((run) => [
    h("span", { class: "mono" }, run.id),
    run.member,
    run.seed,
    formatPercent(run.test_acc),
    h("a", { href: withKey(run.weights_url), download: `${run.id}.safetensors` }, "safetensors"),
  ]);
  return h(
    "section",
    { class: "card" },
    cardHead(
      h("h3", {}, "Trained models"),
      h("a", { class: "button", href: `#/ensembles/new/${job.id}` }, "Build an ensemble from these"),
    ),
    table(["run", "member", "seed", "test acc", "weights"], rows),
  );
}

function membersTable(job) {
  if (!job.members.length) return null;
  const ids = job.members.map((m) => m.id).join(",");
  const rows = job.members.map((m) => [
    h("a", { href: `#/jobs/${m.id}` }, `#${m.member}`),
    statusPill(m.status),
    progressText(m.progress, m.status),
    formatPercent(m.metrics.val_acc),
    formatPercent(m.metrics.test_acc),
  ]);
  return h(
    "section",
    { class: "card" },
    cardHead(
      h("h3", {}, "Members"),
      h("a", { class: "button", href: `#/compare/${ids}` }, "Overlay their curves"),
      job.ensemble_id &&
        h("a", { class: "button primary", href: `#/ensembles/${job.ensemble_id}` }, "The ensemble"),
    ),
    table(["member", "status", "progress", "val acc", "test acc"], rows),
  );
}

export function showJob(main, { id, onChanged }) {
  let source = null;
  let left = false;
  let latestAttempt = 0;
  let isEnsemble = false;
  // Every point so far, with its step: a resumed attempt replaces those after its checkpoint.
  const curves = Object.fromEntries(
    CHARTS.flatMap(({ series }) => series.map(({ name }) => [name, []])),
  );
  const pill = h("span", { id: "job-status" });
  const bar = h("span", {});
  const progressLine = h("span", { id: "job-progress", class: "muted" });
  const tileRow = h("div", {});
  const notice = h("p", { class: "notice", hidden: true });
  const cancelButton = h("button", { class: "danger", hidden: true, onclick: cancel }, "Cancel");
  const title = h("h2", { id: "job-title" }, "…");
  const meta = h("p", { class: "muted mono" }, id);
  const chartsBox = h("div", { class: "charts", id: "job-charts" });
  const specCard = h("section", { class: "card" });
  const lower = h("div", { class: "charts" }, specCard);
  const tables = h("div", { class: "stack" });
  replaceChildren(
    main,
    h(
      "section",
      { class: "card" },
      cardHead(h("div", {}, title, meta), cancelButton, pill),
      h("div", { class: "progress" }, bar),
      progressLine,
      tileRow,
      notice,
    ),
    chartsBox,
    lower,
    tables,
  );

  function showState(status, progress, metrics) {
    replaceChildren(pill, statusPill(status));
    bar.style.width = `${((progress?.fraction ?? (status === "succeeded" ? 1 : 0)) * 100).toFixed(1)}%`;
    progressLine.textContent = progressText(progress, status);
    // An ensemble job measures only the ensemble's test accuracy.
    const shown = TILES.filter(([key]) => !isEnsemble || metrics?.[key] !== undefined);
    replaceChildren(
      tileRow,
      tiles(shown.map(([key, label, format]) => [label, format(metrics?.[key]), key])),
    );
    cancelButton.hidden = TERMINAL.includes(status);
  }

  function showJobDetails(job) {
    title.textContent = job.name;
    meta.textContent =
      `${job.id} · created ${formatTime(job.created_at)}` +
      (job.finished_at ? ` · finished ${formatTime(job.finished_at)}` : "") +
      (job.attempts > 1 ? ` · ${job.attempts} attempts` : "");
    showState(job.status, job.progress, job.metrics);
    if (job.error) {
      notice.textContent = job.error;
      notice.className = "notice error";
      notice.hidden = false;
    }
    replaceChildren(tables, runsTable(job));
    // An ensemble job has no curve of its own: its members take the charts' place.
    if (job.members.length) replaceChildren(chartsBox, membersTable(job));
    replaceChildren(
      specCard,
      cardHead(h("h3", {}, "Spec"), h("span", { class: "muted" }, describeSpec(job.spec))),
      h(
        "dl",
        { class: "spec" },
        specRows(job.spec).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
      ),
      h("details", {}, h("summary", {}, "JSON"), h("pre", {}, JSON.stringify(job.spec, null, 2))),
    );
  }

  let charts = [];
  const plotted = {}; // a metric's name: [its chart, its series there]
  function setUpCharts(job) {
    const epochs = job.spec.training?.epochs;
    const panels = CHARTS.map(({ id }) => h("div", { class: "card chart", id }));
    replaceChildren(chartsBox, panels[0], panels[1]);
    lower.prepend(panels[2]); // the learning rate, beside the spec
    charts = CHARTS.map((chart, i) => createChart(panels[i], { ...chart, xMin: 0, xMax: epochs }));
    CHARTS.forEach(({ series }, i) =>
      series.forEach(({ name }, index) => (plotted[name] = [charts[i], index])),
    );
  }

  function replot() {
    CHARTS.forEach(({ series }, i) =>
      charts[i].setData(series.map(({ name }) => curves[name].map((p) => [p.epoch, p.value]))),
    );
  }

  function addPoint(point) {
    if (!plotted[point.name]) return;
    if (point.attempt > latestAttempt) {
      // A resumed attempt re-trains from its last checkpoint: its points replace the lost attempt's.
      if (latestAttempt) {
        for (const name of Object.keys(curves)) {
          curves[name] = curves[name].filter((p) => p.step < point.step);
        }
        replot();
      }
      latestAttempt = point.attempt;
    }
    curves[point.name].push(point);
    const [chart, index] = plotted[point.name];
    chart.append(index, [[point.epoch, point.value]]);
  }

  function follow() {
    source = openEventStream(`/v1/jobs/${id}/events`, () => {
      notice.textContent = STREAM_GONE;
      notice.className = "notice error";
      notice.hidden = false;
    });
    source.addEventListener("metric", (event) => addPoint(JSON.parse(event.data)));
    source.addEventListener("status", (event) => {
      const update = JSON.parse(event.data);
      showState(update.status, update.progress, update.metrics);
      // An ensemble job's news is about its members: read their table again.
      if (isEnsemble)
        request(`/v1/jobs/${id}`).then(
          (job) => left || showJobDetails(job),
          () => {},
        );
    });
    source.addEventListener("done", (event) => {
      source.close();
      showJobDetails(JSON.parse(event.data));
      onChanged();
    });
  }

  async function cancel() {
    cancelButton.disabled = true;
    try {
      showJobDetails(await request(`/v1/jobs/${id}/cancel`, { method: "POST" }));
      onChanged();
    } catch (exc) {
      notice.textContent = exc.message;
      notice.hidden = false;
    } finally {
      cancelButton.disabled = false;
    }
  }

  request(`/v1/jobs/${id}`)
    .then((job) => {
      if (left) return;
      isEnsemble = job.kind === "ensemble";
      showJobDetails(job);
      if (!isEnsemble) setUpCharts(job);
      follow();
    })
    .catch((exc) => {
      replaceChildren(main, h("section", { class: "card" }, h("p", { class: "notice error" }, exc.message)));
    });

  return () => {
    left = true;
    source?.close();
    for (const chart of charts) chart.destroy();
  };
}
