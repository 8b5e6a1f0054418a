// Charts over uPlot (vendored from npm: vendor/uplot/README.md): several series on shared axes, drawn as
// lines or as points, linear or log axes; drag across the plot to zoom into its x range (a double-click
// resets it), and the legend shows the values under the cursor. A chart takes whole curves (setData) or
// points as they arrive (append), and draws at most once per frame however many arrive.
import uPlot from "./vendor/uplot/uPlot.esm.js";
import { formatNumber, h } from "./dom.js";

export const PALETTE = [
  "#4f46e5",
  "#e4572e",
  "#17a398",
  "#f3a712",
  "#a23b72",
  "#2e86ab",
  "#6a994e",
  "#8d6a9f",
];

const HEIGHT = 220;
const DASH = [6, 4];
const DIMMED_ALPHA = 0.35;

// Noisy minibatch losses read better smoothed, as TensorBoard does: a debiased exponential moving average
// drawn over the faint raw line, from enough points for an average to mean something.
const SMOOTHING = 0.8;
const SMOOTH_FROM_POINTS = 20;

function smoothed(points) {
  let average = 0;
  let n = 0;
  return points.map(([x, y]) => {
    if (y === null || !Number.isFinite(y)) return [x, null];
    average = SMOOTHING * average + (1 - SMOOTHING) * y;
    n += 1;
    return [x, average / (1 - SMOOTHING ** n)];
  });
}

/**
 * uPlot's table: one x column shared by every series, a row per distinct x (and one per repeat of an x
 * within a series, so that a scatter keeps every point). A series has `undefined` at the other series'
 * rows, which uPlot bridges and the cursor skips; its own nulls stay gaps in its line.
 */
function alignedTable(columns) {
  const rows = new Map();
  columns.forEach((points, column) => {
    const repeats = new Map();
    for (const [x, y] of points) {
      const repeat = repeats.get(x) ?? 0;
      repeats.set(x, repeat + 1);
      const key = `${x}#${repeat}`;
      if (!rows.has(key)) rows.set(key, { x, repeat, ys: Array(columns.length).fill(undefined) });
      rows.get(key).ys[column] = y;
    }
  });
  const sorted = [...rows.values()].sort((a, b) => a.x - b.x || a.repeat - b.repeat);
  return [sorted.map((row) => row.x), ...columns.map((_, column) => sorted.map((row) => row.ys[column]))];
}

/** `value` rounded (down or up, as `round` does) to one digit times a power of ten, where log ticks fall. */
function roundToDigit(value, round) {
  const unit = 10 ** Math.floor(Math.log10(value));
  return Number((round(value / unit) * unit).toPrecision(12));
}

/**
 * An axis' range: the data's, reaching at least `atLeast` (e.g. [0, planned epochs]), widened by `pad`
 * of its span at an end the data sets. A log axis is widened by a fraction of its decades instead, and
 * rounded out to a digit times a power of ten so that its ticks fall on round numbers.
 */
function axisRange(min, max, { atLeast = [], log = false, pad = 0 }) {
  const [floor, ceiling] = atLeast;
  if (!Number.isFinite(min) || !Number.isFinite(max)) {
    // Nothing drawn yet: the span the axis covers anyway.
    [min, max] = log ? [1, 10] : [floor ?? 0, ceiling ?? 1];
  }
  if (log) {
    const [lo, hi] = [Math.log10(min), Math.log10(max)];
    const margin = hi > lo ? (hi - lo) * pad : 0.1;
    return [roundToDigit(10 ** (lo - margin), Math.floor), roundToDigit(10 ** (hi + margin), Math.ceil)];
  }
  const lo = floor === undefined ? min : Math.min(min, floor);
  const hi = ceiling === undefined ? max : Math.max(max, ceiling);
  const margin = hi > lo ? (hi - lo) * pad : Math.abs(hi) * 0.1 || 1;
  return [lo === floor && hi > lo ? lo : lo - margin, hi === ceiling && hi > lo ? hi : hi + margin];
}

/** A CSS custom property of the page (style.css keeps the charts' colours with the rest). */
const cssColor = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function axis(label, format) {
  return {
    label,
    labelSize: label ? 16 : 0,
    labelGap: 0,
    labelFont: "11px system-ui, sans-serif",
    font: "11px system-ui, sans-serif",
    stroke: cssColor("--muted"),
    grid: { stroke: cssColor("--chart-grid"), width: 1 },
    ticks: { stroke: cssColor("--chart-axis"), width: 1, size: 4 },
    // On a log axis uPlot leaves out (null) the labels of the steps that have no room.
    values: (u, splits) => splits.map((v) => (v === null ? null : format(v))),
  };
}

/**
 * A chart in `container`: a title, an optional "log y" switch, the plot and its legend.
 * options: {
 *   title, xLabel ("epoch"), yLabel, mode ("lines" | "points": a scatter),
 *   series: [{name (a key, else the label), label, stroke (a colour), dashed, dimmed, width (of its line),
 *             markers (a dot at each point), smooth (an average over the faint raw line)}],
 *   logX, logY (log axes; values <= 0 are left out), logYToggle (a switch between linear and log y),
 *   xMin, xMax, yMin, yMax (ends an axis reaches at least, e.g. 0 and the planned epochs),
 *   yFormat, xFormat (a number's text on that axis and in the legend), empty (text while nothing is drawn)
 * }
 * Returns {setData([[[x, y], ...] per series]), append(seriesIndex, [[x, y], ...]), setSeries(series),
 * destroy()}. What is drawn can be read off the page: the plot's element (.chart-plot) carries the axes'
 * ranges (data-x-min, data-x-max, data-y-min, data-y-max), data-x-scale and data-y-scale ("linear" | "log"),
 * and each series' legend row data-series (its name), data-points (how many points it has) and the
 * classes dashed and dimmed where it is drawn so.
 */
export function createChart(container, options = {}) {
  const { title, xLabel = "epoch", yLabel, mode = "lines", logX = false, logYToggle = false } = options;
  const yFormat = options.yFormat || ((v) => formatNumber(v, 3));
  const xFormat = options.xFormat || ((v) => formatNumber(v));
  const height = options.height || HEIGHT;
  let logY = options.logY || false;
  let series = [];
  let points = [];
  let lanes = [];
  let plot = null;
  let zoomed = false;
  let frame = 0;

  const empty = h("div", { class: "chart-empty" }, options.empty || "waiting for the first points…");
  const area = h("div", { class: "chart-plot" }, empty);
  const logSwitch = logYToggle
    ? h(
        "label",
        { class: "check chart-log" },
        h("input", { type: "checkbox", checked: logY, onchange: (event) => setLogY(event.target.checked) }),
        "log y",
      )
    : null;
  const head = h("div", { class: "chart-head" }, h("h3", { class: "chart-title" }, title), logSwitch);
  container.append(head, area);

  /** What a uPlot series draws of ours: log axes leave out what they cannot place. */
  function drawable(list) {
    return list.filter(([x, y]) => (!logX || x > 0) && (!logY || y === null || y > 0));
  }

  /** The points of one lane: a series, or the faint raw companion of a smoothed one. */
  function lanePoints({ index, raw }) {
    const list = drawable(points[index]);
    const smooth = series[index].smooth && list.length >= SMOOTH_FROM_POINTS;
    if (raw) return smooth ? list : [];
    return smooth ? smoothed(list) : list;
  }

  function laneSeries({ index, raw }) {
    const spec = series[index];
    const shape = mode === "points" || (spec.markers && !raw);
    return {
      label: spec.label,
      stroke: spec.stroke,
      width: raw ? 1 : (spec.width ?? 2),
      dash: spec.dashed ? DASH : undefined,
      alpha: raw ? 0.3 : spec.dimmed ? DIMMED_ALPHA : 1,
      class: raw ? "raw-companion" : undefined,
      paths: mode === "points" ? () => null : undefined,
      points: { show: shape, size: mode === "points" ? 7 : 6, fill: spec.stroke, stroke: "#fff", width: 1 },
      value: (u, v) => (v === null || v === undefined ? "–" : yFormat(v)),
    };
  }

  function showScales(u) {
    const { x, y } = u.scales;
    Object.assign(area.dataset, {
      xMin: x.min,
      xMax: x.max,
      yMin: y.min,
      yMax: y.max,
      xScale: logX ? "log" : "linear",
      yScale: logY ? "log" : "linear",
    });
  }

  function showCounts() {
    const rows = area.querySelectorAll(".u-legend tr.u-series");
    lanes.forEach((lane, i) => {
      const row = rows[i + 1]; // row 0 is the x value's
      if (!row || lane.raw) return;
      row.dataset.series = series[lane.index].name ?? series[lane.index].label;
      row.dataset.points = points[lane.index].length;
      row.classList.toggle("dashed", Boolean(series[lane.index].dashed));
      row.classList.toggle("dimmed", Boolean(series[lane.index].dimmed));
    });
    empty.hidden = points.some((list) => list.length);
  }

  /** A smoothed series and its raw companion are one entry in the legend: shown or hidden together. */
  function showCompanion(u, i, change) {
    if (i === null || change.show === undefined) return;
    const companion = lanes.findIndex((lane) => lane.raw && lane.index === lanes[i - 1].index);
    if (companion >= 0) u.setSeries(companion + 1, { show: change.show }, false);
  }

  function build() {
    plot?.destroy();
    zoomed = false;
    lanes = series.flatMap((spec, index) => (spec.smooth ? [{ index, raw: true }, { index }] : [{ index }]));
    const pad = mode === "points" ? 0.05 : 0;
    plot = new uPlot(
      {
        width: Math.max(area.clientWidth, 200),
        height,
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
        scales: {
          x: {
            time: false,
            distr: logX ? 3 : 1,
            // While zoomed, the range is the one chosen; else the data's, reaching xMin and xMax.
            range: (u, min, max) =>
              zoomed
                ? [min, max]
                : axisRange(min, max, { atLeast: [options.xMin, options.xMax], log: logX, pad }),
          },
          y: {
            distr: logY ? 3 : 1,
            range: (u, min, max) =>
              axisRange(min, max, { atLeast: [options.yMin, options.yMax], log: logY, pad: 0.05 }),
          },
        },
        axes: [{ ...axis(xLabel, xFormat), size: 30 }, axis(yLabel, yFormat)],
        series: [
          { label: xLabel, value: (u, v) => (v === null || v === undefined ? "–" : xFormat(v)) },
          ...lanes.map(laneSeries),
        ],
        hooks: {
          // A drag that selects a span is a zoom; new points then keep it until a double-click.
          setSelect: [(u) => (zoomed ||= u.select.width > 0)],
          setScale: [showScales],
          setSeries: [showCompanion],
        },
      },
      alignedTable(lanes.map(lanePoints)),
      area,
    );
    showCounts();
  }

  function draw() {
    frame = 0;
    const table = alignedTable(lanes.map(lanePoints));
    if (zoomed) {
      // Keep the chosen x range; the y axis still fits what it shows.
      plot.setData(table, false);
      plot.setScale("x", { min: plot.scales.x.min, max: plot.scales.x.max });
    } else {
      plot.setData(table);
    }
    showCounts();
  }

  const scheduleDraw = () => {
    frame ||= requestAnimationFrame(draw);
  };

  function setSeries(next) {
    series = next;
    points = series.map((_, i) => points[i] || []);
    build();
  }

  function setLogY(on) {
    logY = on;
    build();
  }

  // uPlot draws at a width in pixels: follow the container's.
  const resizer = new ResizeObserver(() => {
    const width = area.clientWidth;
    if (plot && width > 0 && width !== plot.width) plot.setSize({ width, height });
  });
  resizer.observe(area);
  // uPlot resets the x range on a double-click; in the capture phase, before it, the range stops being a
  // zoom so that it reaches xMin and xMax again.
  area.addEventListener("dblclick", () => (zoomed = false), true);
  setSeries(options.series || []);

  return {
    setSeries,
    setData(next) {
      points = series.map((_, i) => [...(next[i] || [])]);
      scheduleDraw();
    },
    append(index, list) {
      points[index].push(...list);
      scheduleDraw();
    },
    destroy() {
      cancelAnimationFrame(frame);
      resizer.disconnect();
      plot?.destroy();
    },
  };
}
