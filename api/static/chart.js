// Line charts drawn as plain SVG. Hand-written rather than vendored: axes, ticks and a few polylines are
// ~150 lines, render identically offline, and leave the points countable in the DOM (the browser test
// reads `data-points`); canvas libraries (Chart.js, uPlot) would hide them and D3 is far larger than this.
import { formatNumber, h, replaceChildren, s } from "./dom.js";

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

const WIDTH = 560;
const HEIGHT = 240;
const MARGIN = { top: 12, right: 16, bottom: 36, left: 52 };

/** Round tick values covering [min, max]: steps of 1, 2 or 5 times a power of ten. */
export function niceTicks(min, max, count = 5) {
  if (!(max > min)) [min, max] = [min - 0.5, max + 0.5];
  const rough = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((candidate) => candidate >= rough);
  const ticks = [];
  for (let value = Math.floor(min / step) * step; value <= max + step * 1e-9; value += step) {
    ticks.push(Number(value.toPrecision(12)));
  }
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

// Noisy minibatch losses read better smoothed, as TensorBoard does: a debiased exponential moving average
// drawn over the faint raw line.
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

function extent(series, axis) {
  const values = series.flatMap((line) => line.points.map((p) => p[axis])).filter((v) => v !== null);
  return values.length ? [Math.min(...values), Math.max(...values)] : [0, 1];
}

/** The SVG path of one series; a null y breaks the line. */
function linePath(points, x, y) {
  let path = "";
  let pen = "M";
  for (const [px, py] of points) {
    if (py === null || py === undefined || !Number.isFinite(py)) {
      pen = "M";
      continue;
    }
    path += `${pen}${x(px).toFixed(1)},${y(py).toFixed(1)}`;
    pen = "L";
  }
  return path;
}

/**
 * A chart in a container (title, legend, SVG); returns {update(series, options)} to redraw it.
 * series: [{name, label, color, points: [[x, y], ...], markers, dashed, smooth}]
 * options: {title, xLabel, yFormat, xMax (a fixed end of the x axis, e.g. the planned epochs),
 *           yMin, yMax (fixed y bounds; else from the data), empty (text while there is no point)}
 */
export function createLineChart(container, options = {}) {
  const svg = s("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "chart-svg",
    role: "img",
    "aria-label": options.title || "chart",
  });
  const legend = h("div", { class: "legend" });
  container.append(
    h("div", { class: "chart-head" }, h("h3", { class: "chart-title" }, options.title), legend),
    svg,
  );
  const update = (series, overrides = {}) => {
    draw(svg, series, { ...options, ...overrides });
    replaceChildren(
      legend,
      series.map((line) =>
        h(
          "span",
          { class: "legend-item" },
          h("i", { class: `swatch${line.dashed ? " dashed" : ""}`, style: `--color: ${line.color}` }),
          line.label,
        ),
      ),
    );
  };
  update([]);
  return { update, svg };
}

function draw(svg, series, options) {
  const yFormat = options.yFormat || ((v) => formatNumber(v, 3));
  const drawn = series.filter((line) => line.points.length);
  let [xMin, xMax] = extent(drawn, 0);
  let [yMin, yMax] = extent(drawn, 1);
  xMin = Math.min(0, xMin);
  xMax = Math.max(xMax, options.xMax ?? 0, xMin + 1e-9);
  yMin = options.yMin ?? Math.min(0, yMin);
  yMax = options.yMax ?? yMax;
  const xTicks = niceTicks(xMin, xMax, 6);
  const yTicks = niceTicks(yMin, yMax, 4);
  [xMin, xMax] = [xTicks[0], xTicks[xTicks.length - 1]];
  [yMin, yMax] = [yTicks[0], yTicks[yTicks.length - 1]];
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (v) => MARGIN.left + ((v - xMin) / (xMax - xMin)) * plotW;
  const y = (v) => MARGIN.top + (1 - (v - yMin) / (yMax - yMin)) * plotH;

  const grid = [
    ...yTicks.map((t) => [
      s("line", { class: "grid", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(t), y2: y(t) }),
      s(
        "text",
        { class: "tick", x: MARGIN.left - 8, y: y(t), "text-anchor": "end", dy: "0.32em" },
        yFormat(t),
      ),
    ]),
    ...xTicks.map((t) => [
      s("line", {
        class: "tick-mark",
        x1: x(t),
        x2: x(t),
        y1: HEIGHT - MARGIN.bottom,
        y2: HEIGHT - MARGIN.bottom + 4,
      }),
      s(
        "text",
        { class: "tick", x: x(t), y: HEIGHT - MARGIN.bottom + 16, "text-anchor": "middle" },
        formatNumber(t),
      ),
    ]),
    s("line", {
      class: "axis",
      x1: MARGIN.left,
      x2: WIDTH - MARGIN.right,
      y1: HEIGHT - MARGIN.bottom,
      y2: HEIGHT - MARGIN.bottom,
    }),
    s(
      "text",
      { class: "axis-label", x: MARGIN.left + plotW / 2, y: HEIGHT - 4, "text-anchor": "middle" },
      options.xLabel || "epoch",
    ),
  ];
  const lines = series.map((line) => {
    const markers = line.markers
      ? line.points
          .filter(([, py]) => py !== null)
          .map(([px, py]) =>
            s(
              "circle",
              { class: "marker", cx: x(px), cy: y(py), r: 3, fill: line.color },
              s("title", {}, `${line.label}: ${yFormat(py)} at ${formatNumber(px)}`),
            ),
          )
      : [];
    const smooth = line.smooth && line.points.length >= SMOOTH_FROM_POINTS;
    return s(
      "g",
      { class: "series-group" },
      s("path", {
        class: smooth ? "series raw" : "series",
        d: linePath(line.points, x, y),
        stroke: line.color,
        "stroke-dasharray": line.dashed ? "5 4" : null,
        "data-series": line.name,
        "data-points": line.points.length,
      }),
      smooth
        ? s("path", { class: "series-smooth", d: linePath(smoothed(line.points), x, y), stroke: line.color })
        : null,
      markers,
    );
  });
  const empty = drawn.length
    ? null
    : s(
        "text",
        { class: "empty", x: MARGIN.left + plotW / 2, y: MARGIN.top + plotH / 2, "text-anchor": "middle" },
        options.empty || "waiting for the first points…",
      );
  replaceChildren(svg, grid, lines, empty);
}
