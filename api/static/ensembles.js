// The ensemble builder: choose stored runs and a method, POST /v1/ensembles, then watch the worker's
// evaluation arrive: each member's test accuracy beside the ensemble's, and the gain.
import { ApiError, request } from "./api.js";
import {
  cardHead,
  formatNumber,
  formatPercent,
  formatTime,
  h,
  replaceChildren,
  statusPill,
  table,
  tiles,
} from "./dom.js";

const POLL_MS = 1000;
const METHODS = [
  ["mean_probs", "average the members' softmax outputs"],
  ["mean_logits", "softmax of the members' average logits"],
  ["weights", "one network with the members' averaged parameters (same architecture only)"],
];

/** A refused request's errors, a line each: the field's path, then what is wrong with it. */
export function errorLines(exc) {
  if (!(exc instanceof ApiError) || !Array.isArray(exc.detail)) return [exc.message];
  return exc.detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`);
}

const formatGain = (gain, digits = 1) =>
  gain === undefined ? "–" : `${gain >= 0 ? "+" : ""}${(gain * 100).toFixed(digits)} pts`;

/** A stored model: its job's name (else its run id), and which weights of the run. */
function memberLabel(ref, name) {
  const which = ref.averaged ? " (averaged)" : ref.epoch ? ` (epoch ${ref.epoch})` : "";
  return `${name || ref.run_id}${which}`;
}

function ensemblesTable(ensembles) {
  if (!ensembles.length) return h("p", { class: "muted" }, "No ensembles yet.");
  const rows = ensembles.map((e) => [
    h("a", { href: `#/ensembles/${e.id}` }, e.name),
    e.method,
    statusPill(e.status),
    e.members.length,
    formatPercent(e.evaluation?.ensemble_accuracy),
    formatGain(e.evaluation?.gain),
  ]);
  return table(["name", "method", "status", "members", "ensemble acc", "gain"], rows);
}

/** Each finished job's runs as checkboxes; those of `preselected` jobs come checked. */
function runPicker(jobs, preselected) {
  if (!jobs.length) return h("p", { class: "muted" }, "No finished runs yet: train a job first.");
  return jobs.map((job) =>
    h(
      "div",
      { class: "run-group" },
      h("div", { class: "run-group-title" }, h("a", { href: `#/jobs/${job.id}` }, job.name)),
      job.runs.map((run) =>
        h(
          "label",
          { class: "check run" },
          h("input", { type: "checkbox", name: "run", value: run.id, checked: preselected.has(job.id) }),
          ` member ${run.member} · seed ${run.seed} · test acc ${formatPercent(run.test_acc)}`,
          h("span", { class: "mono muted" }, ` ${run.id}`),
        ),
      ),
    ),
  );
}

export function showEnsembleBuilder(main, { jobIds = [] }) {
  const notice = h("div", { class: "notice error", id: "ensemble-errors", hidden: true });
  const runsBox = h("div", { class: "run-picker", id: "run-picker" }, h("p", { class: "muted" }, "Loading…"));
  const recent = h("div", {});
  const nameInput = h("input", { type: "text", id: "ensemble-name", placeholder: "optional" });
  const buildButton = h(
    "button",
    { type: "submit", class: "primary", id: "build-ensemble" },
    "Build ensemble",
  );
  const methods = METHODS.map(([method, about], i) =>
    h(
      "label",
      { class: "radio" },
      h("input", { type: "radio", name: "method", value: method, checked: i === 0 }),
      h("b", {}, method),
      h("span", { class: "muted" }, about),
    ),
  );
  const form = h(
    "form",
    { id: "ensemble-form", novalidate: true },
    runsBox,
    h("fieldset", { class: "block" }, h("legend", {}, "Method"), methods),
    h("div", { class: "field inline" }, h("label", { for: "ensemble-name" }, "name"), nameInput),
    h("div", { class: "form-actions" }, buildButton),
  );
  const intro = "Average the predictions of stored models; evaluated on the members' test split.";
  replaceChildren(
    main,
    h(
      "section",
      { class: "card" },
      cardHead(h("div", {}, h("h2", {}, "Build an ensemble"), h("p", { class: "muted" }, intro))),
      notice,
      form,
    ),
    h("section", { class: "card" }, cardHead(h("h3", {}, "Recent ensembles")), recent),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const members = [...form.querySelectorAll("input[name=run]:checked")].map((box) => box.value);
    const body = { members, method: form.querySelector("input[name=method]:checked").value };
    if (nameInput.value.trim()) body.name = nameInput.value.trim();
    buildButton.disabled = true;
    try {
      const ensemble = await request("/v1/ensembles", { method: "POST", body });
      window.location.hash = `#/ensembles/${ensemble.id}`;
    } catch (exc) {
      replaceChildren(
        notice,
        errorLines(exc).map((line) => h("div", {}, line)),
      );
      notice.hidden = false;
    } finally {
      buildButton.disabled = false;
    }
  });

  const showError = (box) => (exc) => replaceChildren(box, h("p", { class: "notice error" }, exc.message));
  request("/v1/jobs?status=succeeded&limit=100")
    .then((page) => {
      const jobs = page.items.filter((job) => job.runs.length);
      replaceChildren(runsBox, runPicker(jobs, new Set(jobIds)));
    })
    .catch(showError(runsBox));
  request("/v1/ensembles?limit=10")
    .then((page) => replaceChildren(recent, ensemblesTable(page.items)))
    .catch(showError(recent));
  return () => {};
}

/** The names of the jobs that trained the members. */
async function memberNames(members) {
  return Promise.all(
    members.map(async (ref) => {
      const run = await request(`/v1/runs/${ref.run_id}`);
      return (await request(`/v1/jobs/${run.job_id}`)).name;
    }),
  );
}

/** Horizontal bars from a baseline below the lowest accuracy, so that a point or two of gain shows. */
function accuracyBars(evaluation, members, names) {
  const rows = [
    ...evaluation.member_accuracies.map((acc, i) => [memberLabel(members[i], names[i]), acc, "member"]),
    ["mean of members", evaluation.mean_member_accuracy, "mean"],
    ["ensemble", evaluation.ensemble_accuracy, "ensemble"],
  ];
  const low = Math.max(0, Math.floor((Math.min(...rows.map((r) => r[1])) - 0.02) * 20) / 20);
  const width = (acc) => `${(((acc - low) / (1 - low)) * 100).toFixed(1)}%`;
  return h(
    "div",
    { class: "bars", id: "ensemble-bars" },
    rows.map(([label, acc, kind]) =>
      h(
        "div",
        { class: `bar-row ${kind}` },
        h("span", { class: "bar-label", title: label }, label),
        h("span", { class: "bar-track" }, h("span", { class: "bar", style: `width: ${width(acc)}` })),
        h("span", { class: "bar-value" }, formatPercent(acc, 2)),
      ),
    ),
    h("p", { class: "muted small" }, `test accuracy; bars start at ${formatPercent(low, 0)}`),
  );
}

export function showEnsemble(main, { id }) {
  let timer = null;
  let left = false;
  const body = h("section", { class: "card", id: "ensemble-view" }, h("p", { class: "muted" }, "Loading…"));
  replaceChildren(main, body);

  function render(ensemble, names) {
    const e = ensemble.evaluation;
    const about = `${ensemble.id} · ${ensemble.method} · created ${formatTime(ensemble.created_at)}`;
    const waiting =
      ensemble.status === "building" ? "Evaluating the members and the ensemble on a worker…" : "";
    const evaluation = e
      ? tiles(
          [
            ["ensemble acc", formatPercent(e.ensemble_accuracy, 2), "ensemble_accuracy"],
            ["mean member acc", formatPercent(e.mean_member_accuracy, 2)],
            ["gain", formatGain(e.gain, 2)],
            ["ensemble NLL", formatNumber(e.ensemble_nll)],
            ["mean member NLL", formatNumber(e.mean_member_nll)],
          ],
          { id: "ensemble-evaluation" },
        )
      : h("p", { class: "muted" }, waiting);
    replaceChildren(
      body,
      cardHead(
        h("div", {}, h("h2", {}, ensemble.name), h("p", { class: "muted mono" }, about)),
        h("span", { id: "ensemble-status" }, statusPill(ensemble.status)),
      ),
      ensemble.error && h("p", { class: "notice error" }, ensemble.error),
      evaluation,
      e && accuracyBars(e, ensemble.members, names),
      h(
        "p",
        { class: "muted small" },
        "members: ",
        ensemble.members.map((ref) => memberLabel(ref)).join(", "),
      ),
    );
  }

  async function refresh() {
    try {
      const ensemble = await request(`/v1/ensembles/${id}`);
      const names = ensemble.evaluation ? await memberNames(ensemble.members).catch(() => []) : [];
      if (left) return;
      render(ensemble, names);
      if (ensemble.status === "building") timer = setTimeout(refresh, POLL_MS);
    } catch (exc) {
      replaceChildren(body, h("p", { class: "notice error" }, exc.message));
    }
  }

  refresh();
  return () => {
    left = true;
    clearTimeout(timer);
  };
}
