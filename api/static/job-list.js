// The job list: newest first, live status by polling (quickly while something trains), selectable rows.
import { request } from "./api.js";
import { TERMINAL, describeSpec, formatPercent, h, replaceChildren, statusPill } from "./dom.js";

const FAST_MS = 1500;
const SLOW_MS = 5000;

export function createJobList(root, { onSelectionChange }) {
  const selected = new Set();
  let jobs = [];
  let timer = null;
  let currentId = null;
  const body = h("ul", { class: "job-list", id: "job-list" });
  const error = h("p", { class: "notice error", hidden: true });
  root.append(error, body);

  function row(job) {
    const acc = job.metrics?.test_acc ?? job.metrics?.val_acc;
    const fraction = job.progress?.fraction ?? 0;
    return h(
      "li",
      {
        class: `job-row${job.id === currentId ? " current" : ""}`,
        dataset: { jobId: job.id, status: job.status },
      },
      h("input", {
        type: "checkbox",
        class: "job-select",
        checked: selected.has(job.id),
        "aria-label": `select ${job.name}`,
        onchange: (event) => {
          event.target.checked ? selected.add(job.id) : selected.delete(job.id);
          onSelectionChange(selectedJobs());
        },
      }),
      h(
        "a",
        { class: "job-link", href: `#/jobs/${job.id}` },
        h(
          "span",
          { class: "job-name" },
          job.name,
          job.kind === "ensemble" ? h("span", { class: "tag" }, "ensemble") : null,
        ),
        h("span", { class: "job-sub" }, describeSpec(job.spec)),
        h("span", { class: "progress thin" }, h("span", { style: `width: ${(fraction * 100).toFixed(1)}%` })),
      ),
      h(
        "span",
        { class: "job-side" },
        statusPill(job.status),
        h("span", { class: "job-acc" }, acc === undefined ? "" : formatPercent(acc)),
      ),
    );
  }

  function render() {
    if (!jobs.length) {
      replaceChildren(body, h("li", { class: "empty-row" }, "No jobs yet: submit one with the form."));
      return;
    }
    replaceChildren(body, jobs.map(row));
  }

  function selectedJobs() {
    return jobs.filter((job) => selected.has(job.id));
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const page = await request("/v1/jobs?limit=50");
      jobs = page.items;
      const known = new Set(jobs.map((job) => job.id));
      for (const id of selected) if (!known.has(id)) selected.delete(id);
      error.hidden = true;
      render();
      onSelectionChange(selectedJobs());
    } catch (exc) {
      error.textContent = `Cannot list jobs: ${exc.message}`;
      error.hidden = false;
    }
    const active = jobs.some((job) => !TERMINAL.includes(job.status));
    timer = setTimeout(refresh, document.hidden || !active ? SLOW_MS : FAST_MS);
  }

  return {
    refresh,
    selectedJobs,
    setCurrent(id) {
      currentId = id;
      render();
    },
  };
}
