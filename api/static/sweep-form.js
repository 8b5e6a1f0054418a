// The sweep form: the base job from the job form's own blocks, a space editor (a row per searched path),
// and the sweep's settings and pruners from GET /v1/catalog; POST /v1/sweeps, its 422s beside their fields.
import { request } from "./api.js";
import { cardHead, h, replaceChildren } from "./dom.js";
import {
  block,
  clearErrors,
  errorDetails,
  field,
  jobBlocks,
  kindBlock,
  placeErrors,
  readSpec,
  showGeneralErrors,
} from "./form.js";

const DOMAINS = {
  choice: "values, comma-separated (numbers, true/false or text)",
  uniform: "lo, hi",
  loguniform: "lo, hi (0 < lo): learning rates",
  int: "lo, hi (both included)",
};
const FIRST_ROW = { path: "optimizer.lr", kind: "loguniform", values: "0.001, 0.3" };
const NO_PRUNING = { type: "none", description: "every trial trains all its epochs", params: {} };
const INTRO =
  "Trials of one base job with the paths below drawn from their domains; " +
  "a pruner stops those that fall behind.";

/** A typed value as JSON would carry it: a number, a boolean, else the text. */
function scalar(text) {
  if (text === "true" || text === "false") return text === "true";
  const number = Number(text);
  return text !== "" && Number.isFinite(number) ? number : text;
}

function readDomain(kind, text) {
  const values = text
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean)
    .map(scalar);
  return { [kind]: values };
}

/** The numeric fields of a job, as suggestions for a space's paths. */
function suggestedPaths(catalog) {
  const numeric = (prefix, params) =>
    Object.entries(params)
      .filter(([, param]) => ["number", "integer"].includes(param.type))
      .map(([name]) => `${prefix}.${name}`);
  const optimizerParams = Object.assign({}, ...catalog.optimizers.map((o) => o.params));
  return [
    ...new Set([
      ...numeric("optimizer", optimizerParams),
      ...numeric("training", catalog.training),
      ...numeric("regularization", catalog.regularization),
    ]),
  ];
}

/** The space editor: rows of (path, domain kind, values), each with its own slot for the server's error. */
function spaceEditor(catalog) {
  const rows = h("div", { class: "space-rows", id: "space-rows" });
  const paths = h(
    "datalist",
    { id: "space-paths" },
    suggestedPaths(catalog).map((path) => h("option", { value: path })),
  );

  function addRow({ path = "", kind = "choice", values = "" } = {}) {
    const pathInput = h("input", {
      type: "text",
      class: "space-path",
      value: path,
      placeholder: "optimizer.momentum",
      "aria-label": "path",
    });
    pathInput.setAttribute("list", paths.id); // an input's list is read-only as a property
    const kindSelect = h(
      "select",
      { class: "space-kind", "aria-label": "domain" },
      Object.keys(DOMAINS).map((name) => h("option", { value: name, selected: name === kind }, name)),
    );
    const valuesInput = h("input", {
      type: "text",
      class: "space-values",
      value: values,
      placeholder: DOMAINS[kind],
      "aria-label": "values",
    });
    const row = h(
      "div",
      { class: "space-row" },
      pathInput,
      kindSelect,
      valuesInput,
      h(
        "button",
        { type: "button", class: "space-remove", title: "remove", onclick: () => row.remove() },
        "×",
      ),
      h("small", { class: "field-error" }),
    );
    // A 422 names the path (["body", "space", "optimizer.lr", ...]): the row answers to it as it is typed.
    const named = () => (row.dataset.field = `space.${pathInput.value.trim()}`);
    pathInput.addEventListener("input", named);
    kindSelect.addEventListener("change", () => (valuesInput.placeholder = DOMAINS[kindSelect.value]));
    named();
    rows.append(row);
    return row;
  }

  const read = () =>
    Object.fromEntries(
      [...rows.querySelectorAll(".space-row")].map((row) => [
        row.querySelector(".space-path").value.trim(),
        readDomain(row.querySelector(".space-kind").value, row.querySelector(".space-values").value),
      ]),
    );

  addRow(FIRST_ROW);
  const element = block(
    "space",
    "Search space",
    h("p", { class: "formula" }, "Each path's value is drawn from its domain, in place of the base job's."),
    paths,
    rows,
    h("button", { type: "button", id: "space-add", onclick: () => addRow() }, "Add a path"),
  );
  return { element, read };
}

/** The sweep view's form. onCreated(sweep) is told what was created. */
export function showSweepForm(main, { catalog, onCreated }) {
  const errorBox = h("div", { class: "notice error", id: "sweep-form-errors", hidden: true });
  const submitButton = h("button", { type: "submit", class: "primary", id: "submit-sweep" }, "Start sweep");
  const base = jobBlocks(catalog, { withName: false, withEnsemble: false });
  const space = spaceEditor(catalog);
  const settings = h(
    "div",
    { class: "form-blocks", id: "sweep-settings" },
    block(
      "sweep",
      "Sweep",
      h(
        "div",
        { class: "fields" },
        Object.entries(catalog.sweep).map(([name, param]) => field(name, name, param)),
      ),
    ),
    kindBlock("early_stopping", "Early stopping", "type", [NO_PRUNING, ...catalog.pruners], "none"),
  );
  const form = h(
    "form",
    { id: "sweep-form", novalidate: true, class: "job-form" },
    space.element,
    settings,
    h("h3", { class: "form-section" }, "The base job every trial starts from"),
    base,
    h("div", { class: "form-actions" }, submitButton),
  );

  function body() {
    const sweep = { ...readSpec(settings), base: readSpec(base), space: space.read() };
    if (sweep.early_stopping?.type === NO_PRUNING.type) sweep.early_stopping = null;
    return sweep;
  }

  /** The base's errors beside the base's fields; the rest beside the sweep's. */
  function showErrors(exc) {
    const details = errorDetails(exc).map((d) => ({
      ...d,
      loc: (d.loc || []).filter((part, i) => i || part !== "body"),
    }));
    const ofBase = details.filter((d) => d.loc[0] === "base").map((d) => ({ ...d, loc: d.loc.slice(1) }));
    const general = [
      ...placeErrors(base, ofBase).map((line) => `base.${line}`),
      ...placeErrors(form, details.filter((d) => d.loc[0] !== "base")),
    ];
    showGeneralErrors(form, errorBox, general);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    errorBox.hidden = true;
    submitButton.disabled = true;
    try {
      onCreated(await request("/v1/sweeps", { method: "POST", body: body() }));
    } catch (exc) {
      showErrors(exc);
    } finally {
      submitButton.disabled = false;
    }
  });

  replaceChildren(
    main,
    h(
      "section",
      { class: "card" },
      cardHead(h("div", {}, h("h2", {}, "New sweep"), h("p", { class: "muted" }, INTRO))),
      errorBox,
      form,
    ),
  );
  return () => {};
}
