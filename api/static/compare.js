// Several runs on one chart per metric: the lecture's SGD vs momentum vs Nesterov picture, or any choice
// of jobs. Curves come from GET /v1/jobs/{id}/metrics (downsampled by the server) and refresh while
// any of the jobs still trains.
import { request } from "./api.js";
import { createChart, PALETTE } from "./chart.js";
import {
  TERMINAL,
  cardHead,
  describeSpec,
  formatPercent,
  h,
  replaceChildren,
  statusPill,
  table,
} from "./dom.js";

const REFRESH_MS = 2000;
const MAX_POINTS = 400;
const METRICS = [
  ["train_loss", { title: "Training loss", yMin: 0, logYToggle: true }],
  ["val_acc", { title: "Validation accuracy", yMin: 0, yMax: 1, yFormat: (v) => formatPercent(v, 0) }],
  ["val_loss", { title: "Validation loss", yMin: 0, logYToggle: true }],
];

/** "lenet5-nesterov (nesterov lr 0.05 mu 0.9)": the job and what sets it apart, as a legend label. */
function runLabel(job) {
  const o = job.spec.optimizer || {};
  const mu = o.momentum !== undefined ? ` mu ${o.momentum}` : "";
  return `${job.name} (${o.type} lr ${o.lr}${mu})`;
}

export function showCompare(main, { ids }) {
  let timer = null;
  let left = false;
  const charts = h("div", { class: "charts", id: "compare-charts" });
  const summary = h("div", {});
  const notice = h("p", { class: "notice error", hidden: true });
  replaceChildren(
    main,
    h(
      "section",
      { class: "card" },
      cardHead(
        h("h2", {}, `Comparing ${ids.length} runs`),
        h("span", { class: "muted" }, "the same axes for every run; x is the epoch"),
      ),
      notice,
      summary,
    ),
    charts,
  );
  const panels = METRICS.map(([name]) => h("div", { class: "card chart", dataset: { metric: name } }));
  charts.append(...panels);
  let views = null; // drawn once the jobs' names and planned epochs are known

  /** One chart per metric, a series per job: the same colour for a job on every chart. */
  function setUpCharts(jobs) {
    const epochs = Math.max(...jobs.map((job) => job.spec.training?.epochs ?? 0));
    views = METRICS.map(([name, options], i) =>
      createChart(panels[i], {
        ...options,
        xMin: 0,
        xMax: epochs,
        series: jobs.map((job, j) => ({
          name: job.id,
          label: runLabel(job),
          stroke: PALETTE[j % PALETTE.length],
          markers: name !== "train_loss",
          smooth: name === "train_loss",
        })),
      }),
    );
  }

  async function refresh() {
    try {
      const jobs = await Promise.all(ids.map((id) => request(`/v1/jobs/${id}`)));
      const curves = await Promise.all(
        ids.map((id) => request(`/v1/jobs/${id}/metrics?max_points=${MAX_POINTS}`)),
      );
      if (left) return;
      if (!views) setUpCharts(jobs);
      METRICS.forEach(([name], i) =>
        views[i].setData(
          curves.map((curve) => curve.points.filter((p) => p.name === name).map((p) => [p.epoch, p.value])),
        ),
      );
      const rows = jobs.map((job, i) => [
        h("i", { class: "swatch", style: `--color: ${PALETTE[i % PALETTE.length]}` }),
        h("a", { href: `#/jobs/${job.id}` }, job.name),
        describeSpec(job.spec),
        statusPill(job.status),
        formatPercent(job.metrics.best_val_acc),
        formatPercent(job.metrics.test_acc),
      ]);
      replaceChildren(summary, table(["", "job", "what", "status", "best val acc", "test acc"], rows));
      notice.hidden = true;
      if (jobs.some((job) => !TERMINAL.includes(job.status))) timer = setTimeout(refresh, REFRESH_MS);
    } catch (exc) {
      notice.textContent = exc.message;
      notice.hidden = false;
    }
  }

  refresh();
  return () => {
    left = true;
    clearTimeout(timer);
    for (const chart of views || []) chart.destroy();
  };
}
