// A tiny element builder: the dashboard renders user-chosen names, so text goes in as text, never as HTML.

function build(element, props, children) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name in element) element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** h("div", {class: "card"}, "text", otherElement) */
export const h = (tag, props, ...children) => build(document.createElement(tag), props, children);

export function replaceChildren(element, ...children) {
  element.replaceChildren();
  return build(element, {}, children);
}

export const TERMINAL = ["succeeded", "failed", "cancelled"];
// A sweep's trial that will not move again: a trial can also be pruned, or refused before it ran.
export const TRIAL_ENDED = [...TERMINAL, "pruned", "refused"];

export function statusPill(status) {
  return h("span", { class: `pill pill-${status}`, dataset: { status } }, status);
}

export function formatNumber(value, digits = 3) {
  if (value === undefined || value === null || Number.isNaN(value)) return "–";
  if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e5)) return value.toExponential(1);
  return String(Number(value.toPrecision(digits)));
}

export function formatPercent(value, digits = 1) {
  return value === undefined || value === null ? "–" : `${(value * 100).toFixed(digits)}%`;
}

export function formatDuration(seconds) {
  if (seconds === undefined || seconds === null) return "–";
  const total = Math.max(0, Math.round(seconds));
  const [h_, m, s_] = [Math.floor(total / 3600), Math.floor((total % 3600) / 60), total % 60];
  if (h_) return `${h_}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(s_).padStart(2, "0")}s`;
  return `${s_}s`;
}

export function formatTime(iso) {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" }) : "–";
}

/** "lenet5 · nesterov lr 0.05 · digits": what a job trains, in one line. */
export function describeSpec(spec) {
  const model = spec.model?.arch || "custom layers";
  const optimizer = spec.optimizer ? `${spec.optimizer.type} lr ${formatNumber(spec.optimizer.lr)}` : "";
  return [model, optimizer, spec.dataset?.name].filter(Boolean).join(" · ");
}

/** A table: a header row, then one row per entry of `rows`, each a list of cells (text or elements). */
export function table(headers, rows) {
  return h(
    "table",
    { class: "table" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        headers.map((header) => h("th", {}, header)),
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((cells) =>
        h(
          "tr",
          {},
          cells.map((cell) => h("td", {}, cell)),
        ),
      ),
    ),
  );
}

/** A card's heading row: a title (and subtitle) on the left, actions on the right. */
export function cardHead(title, ...right) {
  return h("div", { class: "card-head" }, title, h("span", { class: "actions" }, right));
}

/** Labelled numbers in a row of boxes: [[label, text, key?], ...]; `key` names a tile for tests and CSS. */
export function tiles(items, props = {}) {
  return h(
    "div",
    { class: "tiles", ...props },
    items.map(([label, value, key]) =>
      h(
        "div",
        { class: "tile", dataset: key ? { metric: key } : undefined },
        h("span", { class: "tile-label" }, label),
        h("span", { class: "tile-value" }, value),
      ),
    ),
  );
}
