// A sweep's two pictures: each parameter against the objective (a scatter per path), and the trials'
// validation curves overlaid (pruned ones dashed and dimmed, the best drawn wider).
import { createChart, PALETTE } from "./chart.js";
import { formatNumber, formatPercent, h } from "./dom.js";

// A numeric choice spread over this many times its smallest value reads better on a log axis: a grid of
// learning rates (0.1, 0.01, 0.001) would otherwise crowd all but one against the axis.
const LOG_SPREAD = 100;
const STRIKING = PALETTE[0];
const PRUNED = PALETTE[1];

/** An objective's value as text: val_acc in percent, val_loss as a number. */
export function formatObjective(objective, value, digits) {
  return objective === "val_acc" ? formatPercent(value, digits) : formatNumber(value);
}

function objectiveAxis(objective) {
  return objective === "val_acc"
    ? { yLabel: "val acc", yMin: 0, yMax: 1, yFormat: (v) => formatPercent(v, 0) }
    : { yLabel: "val loss", yMin: 0, logYToggle: true };
}

/** How a path's values go along x: {logX}, {categories} (text or booleans at 0..n-1), or {} (linear). */
function placement(domain) {
  if (domain.loguniform) return { logX: true };
  const values = domain.choice;
  if (!values) return {};
  if (!values.every((v) => typeof v === "number")) return { categories: values.map(String) };
  const positive = values.every((v) => v > 0);
  return positive && Math.max(...values) >= LOG_SPREAD * Math.min(...values) ? { logX: true } : {};
}

/** One scatter per path of the space: succeeded trials, and pruned ones (dimmed) at their last epoch. */
export function createScatters(container, sweep) {
  const objective = sweep.objective;
  const charts = Object.entries(sweep.spec.space).map(([path, domain]) => {
    const { logX = false, categories } = placement(domain);
    const panel = h("div", { class: "card chart", dataset: { path } });
    container.append(panel);
    const chart = createChart(panel, {
      title: `${path} against ${objective}`,
      xLabel: path,
      mode: "points",
      logX,
      ...objectiveAxis(objective),
      // Categories sit at whole numbers; the ticks between them are left blank.
      xFormat: categories ? (v) => (Number.isInteger(v) ? (categories[v] ?? "") : "") : undefined,
      xMin: categories ? 0 : undefined,
      xMax: categories ? categories.length - 1 : undefined,
      empty: "no trial has an objective yet",
      height: 200,
      series: [
        { name: "succeeded", label: "succeeded", stroke: STRIKING },
        { name: "pruned", label: "pruned (at its last epoch)", stroke: PRUNED, dimmed: true },
      ],
    });
    const x = categories ? (value) => categories.indexOf(String(value)) : (value) => value;
    return { path, chart, x };
  });

  return {
    update(trials) {
      const judged = (status) =>
        trials.filter((t) => t.status === status && t.objective !== null && t.objective !== undefined);
      for (const { path, chart, x } of charts) {
        const place = (status) => judged(status).map((t) => [x(t.params[path]), t.objective]);
        chart.setData([place("succeeded"), place("pruned")]);
      }
    },
    destroy() {
      for (const { chart } of charts) chart.destroy();
    },
  };
}

/** "#2 lr 0.05": a trial and its point, as a legend label. */
function trialLabel(trial) {
  const params = Object.entries(trial.params).map(([path, value]) => {
    const shown = typeof value === "number" ? formatNumber(value) : String(value);
    return `${path.split(".").pop()} ${shown}`;
  });
  return [`#${trial.number}`, ...params].join(" ");
}

/** The trials' curves of the objective, one series per trial; update(trials, curves, best). */
export function createTrialCurves(container, sweep) {
  const objective = sweep.objective;
  const chart = createChart(container, {
    title: `Trials' ${objective.replace("_", " ")}`,
    xMin: 0,
    xMax: sweep.spec.base?.training?.epochs,
    ...objectiveAxis(objective),
    empty: "no trial has finished an epoch yet",
  });
  let drawn = "";

  return {
    /** curves: {trial number: [[epoch, value], ...]} */
    update(trials, curves, best) {
      const listed = trials.filter((t) => t.job_id);
      const series = listed.map((trial, i) => ({
        name: `trial-${trial.number}`,
        label: trialLabel(trial),
        stroke: PALETTE[i % PALETTE.length],
        markers: true,
        dashed: trial.status === "pruned",
        dimmed: trial.status === "pruned",
        width: best?.number === trial.number ? 4 : 2,
      }));
      // A new series list rebuilds the plot: only when a trial appeared, was pruned or became the best.
      const described = JSON.stringify(series);
      if (described !== drawn) {
        drawn = described;
        chart.setSeries(series);
      }
      chart.setData(listed.map((trial) => curves[trial.number] || []));
    },
    destroy: () => chart.destroy(),
  };
}
