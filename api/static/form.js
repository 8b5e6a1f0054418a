// The submission form, generated from GET /v1/catalog: every block, choice, default and bound comes from
// the server's JobSpec, so a new optimizer or dataset appears here without a change to this file.
import { request } from "./api.js";
import { cardHead, h, replaceChildren } from "./dom.js";

// Blocks that pydantic tells apart by a field: their 422 locations name the kind (optimizer.nesterov.lr).
const UNIONS = { dataset: "name", optimizer: "type", lr_schedule: "type" };
const LECTURE_OPTIMIZERS = ["sgd", "momentum", "nesterov"];
const INTRO = "Every choice below comes from GET /v1/catalog, with the server's defaults.";
// The job's name is not in the catalog (it is no training choice), so the form adds it.
const NAME_PARAM = { type: "string", default: null, description: "optional; default: preset-optimizer" };

const presetsAsKinds = (presets) =>
  presets.map((preset) => ({ type: preset.name, description: preset.description, params: preset.options }));

function boundsText(param) {
  const low = param.minimum ?? param.exclusive_minimum;
  const high = param.maximum ?? param.exclusive_maximum;
  if (low === undefined && high === undefined) return "";
  const left = low === undefined ? "" : `${low} ${param.minimum !== undefined ? "≤" : "<"} `;
  const right = high === undefined ? "" : ` ${param.maximum !== undefined ? "≤" : "<"} ${high}`;
  return `${left}x${right}`;
}

function control(path, param) {
  const common = { id: `field-${path}`, name: path, dataset: { path, kind: param.type } };
  if (param.choices) {
    // Choices that are not all strings (training.compile: "auto", true, false) travel as JSON values.
    const json = param.choices.some((choice) => typeof choice !== "string");
    const options = param.choices.map((choice) =>
      h(
        "option",
        { value: json ? JSON.stringify(choice) : choice, selected: choice === param.default },
        String(choice),
      ),
    );
    if (param.default === null) options.unshift(h("option", { value: "", selected: true }, "default"));
    return h("select", { ...common, dataset: { ...common.dataset, json: json ? "1" : "" } }, options);
  }
  if (param.type === "boolean")
    return h("input", { ...common, type: "checkbox", checked: Boolean(param.default) });
  if (param.type === "integer" || param.type === "number") {
    return h("input", {
      ...common,
      type: "number",
      step: param.type === "integer" ? "1" : "any",
      min: param.minimum,
      max: param.maximum,
      value: param.default ?? "",
      placeholder: param.required ? "required" : "default",
      title: boundsText(param),
    });
  }
  return h("input", { ...common, type: "text", value: param.default ?? "" });
}

const errorSlot = () => h("small", { class: "field-error" });

/** One labelled field with its description and a slot for the server's error. */
export function field(path, name, param) {
  if (param.type === "object" && param.params) return objectField(path, name, param);
  const input = control(path, param);
  const label = h("label", { for: input.id, title: param.description || "" }, name.replaceAll("_", " "));
  const hint = [param.description, boundsText(param)].filter(Boolean).join(" · ");
  const wrapper = param.type === "boolean" ? "field field-check" : "field";
  return h(
    "div",
    { class: wrapper, dataset: { field: path } },
    label,
    input,
    hint ? h("small", { class: "hint", title: hint }, hint) : null,
    errorSlot(),
  );
}

/** An optional nested block (e.g. a momentum ramp): a switch, and its own fields once switched on. */
function objectField(path, name, param) {
  const inner = h("div", { class: "subfields", hidden: true }, fields(path, param.params));
  const toggle = h("input", {
    type: "checkbox",
    id: `field-${path}`,
    dataset: { objectPath: path },
    onchange: () => {
      inner.hidden = !toggle.checked;
    },
  });
  return h(
    "div",
    { class: "field field-object", dataset: { field: path } },
    h("label", { class: "check" }, toggle, ` ${name.replaceAll("_", " ")}`),
    inner,
    errorSlot(),
  );
}

function fields(prefix, params) {
  return Object.entries(params).map(([name, param]) => field(`${prefix}.${name}`, name, param));
}

/** A block of one of several kinds (dataset, model preset, optimizer, schedule): a select for the kind,
 *  its description, and the chosen kind's own fields. entries: [{type, description, params}] */
export function kindBlock(key, title, tag, entries, chosen) {
  const params = h("div", { class: "fields" });
  const about = h("p", { class: "formula" });
  const select = control(`${key}.${tag}`, {
    type: "string",
    choices: entries.map((e) => e.type),
    default: chosen,
  });
  const show = () => {
    const entry = entries.find((e) => e.type === select.value);
    about.textContent = entry.description || "";
    replaceChildren(params, fields(key, entry.params));
  };
  select.addEventListener("change", show);
  show();
  const choice = h(
    "div",
    { class: "field", dataset: { field: `${key}.${tag}` } },
    h("label", { for: select.id }, tag),
    select,
    errorSlot(),
  );
  return block(key, title, choice, about, params);
}

/** A titled group of fields; errors about the block as a whole show under its title. */
export function block(key, title, ...children) {
  return h(
    "fieldset",
    { class: "block", dataset: { field: key } },
    h("legend", {}, title),
    errorSlot(),
    children,
  );
}

export function plainBlock(key, title, params) {
  return block(key, title, h("div", { class: "fields" }, fields(key, params)));
}

function readValue(input) {
  if (input.type === "checkbox") return input.checked;
  if (input.value === "") return undefined; // left empty: the server's default
  if (input.dataset.kind === "integer" || input.dataset.kind === "number") return Number(input.value);
  if (input.dataset.json) return JSON.parse(input.value);
  return input.value;
}

function setPath(target, path, value) {
  const keys = path.split(".");
  let node = target;
  for (const key of keys.slice(0, -1)) node = node[key] ??= {};
  node[keys[keys.length - 1]] = value;
}

/** The JobSpec (or other object) the fields under `form` describe; switched-off optional blocks and empty
 *  fields are left out. */
export function readSpec(form) {
  const spec = {};
  const off = [...form.querySelectorAll("[data-object-path]")]
    .filter((t) => !t.checked)
    .map((t) => `${t.dataset.objectPath}.`);
  for (const input of form.querySelectorAll("[data-path]")) {
    const path = input.dataset.path;
    if (off.some((prefix) => path.startsWith(prefix))) continue;
    const value = readValue(input);
    if (value !== undefined) setPath(spec, path, value);
  }
  return spec;
}

/** The form field a 422 `loc` points at: the discriminator level (e.g. "nesterov") is not a field. */
function fieldFor(form, loc) {
  const parts = loc.filter((part, i) => !(i === 0 && part === "body")).map(String);
  if (UNIONS[parts[0]] && parts.length > 2) {
    const chosen = form.querySelector(`[data-path="${parts[0]}.${UNIONS[parts[0]]}"]`)?.value;
    if (parts[1] === chosen) parts.splice(1, 1);
  }
  for (let n = parts.length; n > 0; n -= 1) {
    const found = form.querySelector(`[data-field="${CSS.escape(parts.slice(0, n).join("."))}"]`);
    if (found) return found;
  }
  return null;
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
  for (const item of form.querySelectorAll(".invalid")) item.classList.remove("invalid");
}

/** A 422's details, or a lone error's message as one at no field. */
export const errorDetails = (exc) =>
  Array.isArray(exc.detail) ? exc.detail : [{ loc: [], msg: exc.message }];

/** Each error next to its field under `form`; returns the lines of those that belong to no field. */
export function placeErrors(form, details) {
  const general = [];
  for (const detail of details) {
    const target = fieldFor(form, detail.loc || []);
    const slot = target?.querySelector(":scope > .field-error");
    if (!slot) {
      general.push(`${(detail.loc || []).join(".")}: ${detail.msg}`.replace(/^: /, ""));
      continue;
    }
    target.classList.add("invalid");
    slot.textContent = slot.textContent ? `${slot.textContent}; ${detail.msg}` : detail.msg;
  }
  return general;
}

/** Lines of errors in a form's own error box (hidden when there are none), then the first bad field
 *  focused. */
export function showGeneralErrors(form, box, general) {
  replaceChildren(
    box,
    general.map((line) => h("div", {}, line)),
  );
  box.hidden = !general.length;
  form.querySelector(".invalid input, .invalid select")?.focus();
}

/** Each error next to its field; what belongs to no field goes in the form's own error box. */
function showErrors(form, box, exc) {
  showGeneralErrors(form, box, placeErrors(form, errorDetails(exc)));
}

/** A job's blocks (data, model, optimizer, schedule, regularization, training, resources; the job's name
 *  and its ensemble unless left out), wired so that choosing a preset fills in its own defaults. */
export function jobBlocks(catalog, { withName = true, withEnsemble = true } = {}) {
  const blocks = h(
    "div",
    { class: "form-blocks" },
    withName && block("job", "Job", field("name", "name", NAME_PARAM)),
    kindBlock("dataset", "Data", "name", catalog.datasets, "digits"),
    kindBlock("model", "Model", "arch", presetsAsKinds(catalog.presets), catalog.presets[0].name),
    kindBlock("optimizer", "Optimizer", "type", catalog.optimizers, "sgd"),
    kindBlock("lr_schedule", "Learning-rate schedule", "type", catalog.schedules, "constant"),
    plainBlock("regularization", "Regularization", catalog.regularization),
    plainBlock("training", "Training", catalog.training),
    withEnsemble && plainBlock("ensemble", "Ensemble", catalog.ensemble),
    plainBlock("resources", "Resources", catalog.resources),
  );

  // A preset's own defaults (GET /v1/catalog presets[].defaults): choosing one fills in its optimizer, lr
  // and epochs, the values the server would give a spec that left them out (alexnet diverges at lenet5's).
  const defaultsOf = Object.fromEntries(catalog.presets.map((preset) => [preset.name, preset.defaults]));
  const input = (path) => blocks.querySelector(`[data-path="${path}"]`);
  const presetLr = () => {
    const defaults = defaultsOf[input("model.arch").value];
    if (defaults) input("optimizer.lr").value = defaults.lr[input("optimizer.type").value];
  };
  const presetChosen = () => {
    const defaults = defaultsOf[input("model.arch").value];
    if (!defaults) return;
    const optimizer = input("optimizer.type");
    optimizer.value = defaults.optimizer.type;
    optimizer.dispatchEvent(new Event("change")); // its fields redrawn, then presetLr below
    input("training.epochs").value = defaults.epochs;
  };
  // Registered after each kind block's own listener, so they run once its fields are drawn.
  input("optimizer.type").addEventListener("change", presetLr);
  input("model.arch").addEventListener("change", presetChosen);
  presetChosen();
  return blocks;
}

/** The form view. onSubmitted(jobs) is told what was created. */
export function showSubmitForm(main, { catalog, onSubmitted }) {
  const errorBox = h("div", { class: "notice error", id: "form-errors", hidden: true });
  const submitButton = h("button", { type: "submit", class: "primary", id: "submit-job" }, "Submit job");
  const lectureButton = h(
    "button",
    {
      type: "button",
      id: "submit-lecture",
      title:
        "Three jobs, the same except the update rule, at the learning rate above; then their curves overlaid",
    },
    "Run SGD vs momentum vs Nesterov",
  );
  const form = h(
    "form",
    { id: "job-form", novalidate: true, class: "job-form" },
    jobBlocks(catalog),
    h("div", { class: "form-actions" }, submitButton, lectureButton),
  );

  async function submit(specs) {
    clearErrors(form);
    errorBox.hidden = true;
    submitButton.disabled = lectureButton.disabled = true;
    const created = [];
    try {
      for (const spec of specs) created.push(await request("/v1/jobs", { method: "POST", body: spec }));
      onSubmitted(created);
    } catch (exc) {
      if (created.length) onSubmitted(created);
      else showErrors(form, errorBox, exc);
    } finally {
      submitButton.disabled = lectureButton.disabled = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit([readSpec(form)]);
  });
  lectureButton.addEventListener("click", () => {
    // The lecture's picture: the same network and learning rate, only the update rule changes.
    const base = readSpec(form);
    const momentum =
      base.optimizer.momentum ??
      catalog.optimizers.find((o) => o.type === "momentum").params.momentum.default;
    const stem = base.name || base.model.arch;
    submit(
      LECTURE_OPTIMIZERS.map((type) => ({
        ...base,
        name: `${stem}-${type}`,
        optimizer:
          type === "sgd" ? { type, lr: base.optimizer.lr } : { type, lr: base.optimizer.lr, momentum },
      })),
    );
  });

  replaceChildren(
    main,
    h(
      "section",
      { class: "card" },
      cardHead(h("div", {}, h("h2", {}, "New training job"), h("p", { class: "muted" }, INTRO))),
      errorBox,
      form,
    ),
  );
  return () => {};
}
