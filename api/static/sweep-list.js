// The sweeps, newest first: what each searches and how far it is; read again while one runs.
import { request } from "./api.js";
import { TRIAL_ENDED, cardHead, formatTime, h, replaceChildren, statusPill, table } from "./dom.js";
import { formatObjective } from "./sweep-charts.js";

const POLL_MS = 2000;

function sweepsTable(sweeps) {
  if (!sweeps.length) return h("p", { class: "muted" }, "No sweeps yet.");
  const rows = sweeps.map((sweep) => [
    h("a", { href: `#/sweeps/${sweep.id}` }, sweep.name),
    statusPill(sweep.status),
    sweep.method,
    `${sweep.trials.filter((t) => TRIAL_ENDED.includes(t.status)).length} / ${sweep.max_trials}`,
    sweep.best ? `${formatObjective(sweep.objective, sweep.best.objective, 2)} ${sweep.objective}` : "–",
    formatTime(sweep.created_at),
  ]);
  const element = table(["name", "status", "method", "trials done", "best", "created"], rows);
  element.id = "sweep-list";
  return element;
}

export function showSweeps(main) {
  let timer = null;
  let left = false;
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  replaceChildren(
    main,
    h(
      "section",
      { class: "card" },
      cardHead(
        h("div", {}, h("h2", {}, "Sweeps"), h("p", { class: "muted" }, "hyperparameter searches")),
        h("a", { class: "button primary", href: "#/sweeps/new", id: "new-sweep" }, "New sweep"),
      ),
      list,
    ),
  );

  async function refresh() {
    try {
      const page = await request("/v1/sweeps?limit=50");
      if (left) return;
      replaceChildren(list, sweepsTable(page.items));
      if (page.items.some((sweep) => sweep.status === "running")) timer = setTimeout(refresh, POLL_MS);
    } catch (exc) {
      replaceChildren(list, h("p", { class: "notice error" }, exc.message));
    }
  }

  refresh();
  return () => {
    left = true;
    clearTimeout(timer);
  };
}
