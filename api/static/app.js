// The dashboard's entry: a hash router over its views, and the job list beside them.
import { captureApiKey, request } from "./api.js";
import { showCompare } from "./compare.js";
import { h, replaceChildren } from "./dom.js";
import { showEnsemble, showEnsembleBuilder } from "./ensembles.js";
import { showSubmitForm } from "./form.js";
import { createJobList } from "./job-list.js";
import { showJob } from "./job-view.js";
import { showSweepForm } from "./sweep-form.js";
import { showSweeps } from "./sweep-list.js";
import { showSweep } from "./sweep-view.js";

captureApiKey();

const main = document.getElementById("main");
const compareButton = document.getElementById("compare-selected");
const ensembleButton = document.getElementById("ensemble-selected");
let catalog = null;
let leaveView = () => {};

const jobList = createJobList(document.getElementById("jobs"), {
  onSelectionChange(jobs) {
    compareButton.disabled = jobs.length < 2;
    compareButton.textContent = jobs.length ? `Compare (${jobs.length})` : "Compare";
    const finished = jobs.filter((job) => job.runs.length);
    ensembleButton.disabled = !finished.length;
    ensembleButton.textContent = finished.length ? `Ensemble (${finished.length})` : "Ensemble";
  },
});

const selectedIds = () =>
  jobList
    .selectedJobs()
    .map((job) => job.id)
    .join(",");
compareButton.addEventListener("click", () => {
  window.location.hash = `#/compare/${selectedIds()}`;
});
ensembleButton.addEventListener("click", () => {
  window.location.hash = `#/ensembles/new/${selectedIds()}`;
});

async function newJobView() {
  catalog ??= await request("/v1/catalog");
  return showSubmitForm(main, {
    catalog,
    onSubmitted(jobs) {
      jobList.refresh();
      const ids = jobs.map((job) => job.id);
      window.location.hash = ids.length === 1 ? `#/jobs/${ids[0]}` : `#/compare/${ids.join(",")}`;
    },
  });
}

async function newSweepView() {
  catalog ??= await request("/v1/catalog");
  return showSweepForm(main, {
    catalog,
    onCreated(sweep) {
      jobList.refresh(); // its first trials are jobs
      window.location.hash = `#/sweeps/${sweep.id}`;
    },
  });
}

const ROUTES = [
  [/^#\/jobs\/([\w-]+)$/, (id) => showJob(main, { id, onChanged: jobList.refresh })],
  [/^#\/compare\/([\w,-]+)$/, (ids) => showCompare(main, { ids: ids.split(",").filter(Boolean) })],
  [
    /^#\/ensembles\/new(?:\/([\w,-]*))?$/,
    (ids) => showEnsembleBuilder(main, { jobIds: ids ? ids.split(",") : [] }),
  ],
  [/^#\/ensembles\/([\w-]+)$/, (id) => showEnsemble(main, { id })],
  [/^#\/sweeps\/?$/, () => showSweeps(main)],
  [/^#\/sweeps\/new$/, newSweepView],
  [/^#\/sweeps\/([\w-]+)$/, (id) => showSweep(main, { id })],
  [/^/, newJobView],
];

async function route() {
  leaveView();
  leaveView = () => {};
  const hash = window.location.hash;
  const [pattern, view] = ROUTES.find(([regex]) => regex.test(hash));
  const match = hash.match(pattern);
  jobList.setCurrent(hash.startsWith("#/jobs/") ? match[1] : null);
  for (const link of document.querySelectorAll(".topbar nav a")) {
    link.classList.toggle(
      "active",
      hash.startsWith(link.getAttribute("href")) || (!hash && link.hash === "#/new"),
    );
  }
  try {
    leaveView = (await view(...match.slice(1))) || leaveView;
  } catch (exc) {
    replaceChildren(main, h("section", { class: "card" }, h("p", { class: "notice error" }, exc.message)));
  }
}

window.addEventListener("hashchange", route);
route();
jobList.refresh();
