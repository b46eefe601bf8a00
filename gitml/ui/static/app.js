// gitml's web UI: a hash router over pages drawn from /api/v1/ui.
// Every page's URL is stable (#/runs/<id>, #/compare?runs=a,b, ...) and every
// view's data is one of the API's answers.
import { fmt, lineChart, numeric, parallelCoordinates, PALETTE, scatter } from "./charts.js";

const API = "/api/v1";
const ROW_H = 28;
const WINDOW = 200; // rows per runs-table request
const BASE_FIELDS = 9; // id … lifecycle_stage: the runs-table fields before the chosen columns
const main = document.getElementById("main");

// -- small helpers ---------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
  return node;
}

const link = (href, label, attrs = {}) => h("a", { href, ...attrs }, label);
const short = (s, n = 12) => (s ? String(s).slice(0, n) : "");
const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "");
const badge = (status) => h("span", { class: `badge ${status}` }, status);
const enc = encodeURIComponent;

function ago(ms) {
  if (!ms) return "";
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function announce(message) { document.getElementById("status").textContent = message; }

class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function headers(json) {
  const out = json ? { "content-type": "application/json" } : {};
  const token = localStorage.getItem("gitml.token");
  if (token) out.authorization = `Bearer ${token}`;
  return out;
}

async function api(path, body) {
  const res = await fetch(API + path, body === undefined ? { headers: headers(false) }
    : { method: "POST", headers: headers(true), body: JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

async function blob(path) {
  const res = await fetch(API + path, { headers: headers(false) });
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => ({})));
  return res.blob();
}

function fill(...nodes) { main.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false)); }

function showError(err) {
  if (err instanceof ApiError && err.status === 401) return tokenForm();
  fill(h("h1", {}, "Something went wrong"), h("div", { class: "error", role: "alert" }, err.message));
}

function tokenForm() {
  const input = h("input", { type: "password", id: "token", autocomplete: "off" });
  fill(
    h("h1", {}, "Sign in"),
    h("p", {}, "This server asks for a token (gitml server --token-file)."),
    localStorage.getItem("gitml.token") ? h("p", { class: "error", role: "alert" }, "The server refused that token.") : null,
    h("form", { class: "toolbar", onsubmit: (ev) => {
      ev.preventDefault();
      localStorage.setItem("gitml.token", input.value.trim());
      route();
    } }, h("label", { for: "token" }, "Token"), input, h("button", { class: "primary" }, "Use token")),
  );
  input.focus();
}

function setTitle(title, crumbs = []) {
  document.title = `${title} · gitml`;
  const box = document.getElementById("crumbs");
  box.replaceChildren(...crumbs.flatMap((c, i) => (i ? [" / ", c] : [c])));
}

function table(headings, rows, attrs = {}) {
  return h("table", { class: "data", ...attrs },
    h("thead", {}, h("tr", {}, headings.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows));
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(Boolean).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

// -- router ------------------------------------------------------------------------

const routes = [
  [/^\/?$/, () => experimentsPage()],
  [/^\/experiments$/, () => experimentsPage()],
  [/^\/experiments\/([^/]+)$/, (m, q) => runsPage(decodeURIComponent(m[1]), q)],
  [/^\/runs\/([0-9a-f]+)$/, (m) => runPage(m[1])],
  [/^\/compare$/, (m, q) => comparePage(q)],
  [/^\/models$/, () => modelsPage()],
  [/^\/models\/([^/]+)$/, (m) => modelPage(decodeURIComponent(m[1]))],
  [/^\/models\/([^/]+)\/versions\/(\d+)$/, (m) => versionPage(decodeURIComponent(m[1]), +m[2])],
  [/^\/commits\/([0-9a-f]{40})$/, (m) => commitPage(m[1])],
];

let current = null; // the page's cleanup, if any

async function route() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = raw.split("?");
  const query = new URLSearchParams(qs || "");
  if (current) { current(); current = null; }
  // A new page opens at its top, as a link to another document would, not at the last page's scroll.
  window.scrollTo(0, 0);
  for (const a of document.querySelectorAll("[data-nav]")) {
    const on = path.startsWith(`/${a.dataset.nav}`) || (a.dataset.nav === "experiments" && path === "/");
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  for (const [pattern, page] of routes) {
    const m = path.match(pattern);
    if (!m) continue;
    try {
      current = (await page(m, query)) || null;
    } catch (err) {
      showError(err);
    }
    return;
  }
  fill(h("h1", {}, "Not found"), h("p", {}, `No page at ${path}. `, link("#/", "Experiments")));
}

function setQuery(path, params) {
  const qs = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined));
  const hash = `#${path}${[...qs].length ? `?${qs}` : ""}`;
  history.replaceState(null, "", hash);
}

// -- experiments -------------------------------------------------------------------

async function experimentsPage() {
  setTitle("Experiments", ["Experiments"]);
  const experiments = await api("/ui/experiments");
  fill(
    h("h1", {}, "Experiments"),
    table(["Name", "Id", "Runs", "Deleted runs", "Last activity", "Created"],
      experiments.map((e) => h("tr", { dataset: { experiment: e.id } },
        h("td", {}, link(`#/experiments/${enc(e.id)}`, e.name)),
        h("td", { class: "mono" }, e.id),
        h("td", { class: "num" }, e.active_runs),
        h("td", { class: "num" }, e.deleted_runs ? link(`#/experiments/${enc(e.id)}?lifecycle=deleted`, e.deleted_runs) : 0),
        h("td", { title: when(e.last_activity) }, ago(e.last_activity)),
        h("td", {}, when(e.creation_time)))),
      { "aria-label": "Experiments", "data-testid": "experiments" }),
  );
  main.focus({ preventScroll: true });
}

// -- runs of an experiment ---------------------------------------------------------

const FIXED = [
  { field: "name", label: "Run", sort: "attributes.run_name", width: "minmax(160px, 2fr)" },
  { field: "status", label: "Status", sort: "attributes.status", width: "100px" },
  // "2026-12-05 00:16:40" whole: 19 characters of tabular digits, and the cell's padding.
  { field: "start_time", label: "Started", sort: "attributes.start_time", width: "calc(19ch + 20px)" },
];

// The lifecycle filter's choices, as MLflow's UI names them, and the run_view_type of each.
const LIFECYCLES = { active: ["Active", "ACTIVE_ONLY"], deleted: ["Deleted", "DELETED_ONLY"], all: ["All", "ALL"] };

function quoteKey(key) { return /^[A-Za-z0-9_.]+$/.test(key) ? key : `\`${key.replace(/`/g, "``")}\``; }
function sortKey(column) {
  const [kind, ...rest] = column.split(".");
  return `${kind}.${quoteKey(rest.join("."))}`;
}

async function runsPage(experimentId, query) {
  const state = {
    filter: query.get("filter") || "",
    order: query.get("order") || "",
    lifecycle: LIFECYCLES[query.get("lifecycle")] ? query.get("lifecycle") : "active",
    columns: query.has("cols") ? query.get("cols").split(",").filter(Boolean) : null,
    selected: new Set((sessionStorage.getItem(`gitml.sel.${experimentId}`) || "").split(",").filter(Boolean)),
  };
  // The first window is asked for at once, beside the experiment: one round trip less.
  let prefetch = api("/ui/runs-table", windowRequest(0, true));
  prefetch.catch(() => {}); // handled where it is awaited
  const experiment = await api(`/experiments/${enc(experimentId)}`);
  setTitle(experiment.name, [link("#/experiments", "Experiments"), experiment.name]);
  const filterInput = h("input", { type: "search", id: "filter", value: state.filter, spellcheck: "false",
    placeholder: "metrics.accuracy > 0.9 and params.lr = '0.01'", "aria-describedby": "filter-error" });
  const errorBox = h("div", { id: "filter-error", role: "alert" });
  const lifecycleSelect = h("select", { id: "lifecycle", onchange: () => { state.lifecycle = lifecycleSelect.value; load(); } },
    Object.entries(LIFECYCLES).map(([value, [label]]) => h("option", { value, selected: value === state.lifecycle }, label)));
  const count = h("span", { class: "muted", "data-testid": "run-count" });
  const compareButton = h("button", { class: "primary", "data-testid": "compare", onclick: () => {
    location.hash = `#/compare?runs=${[...state.selected].join(",")}`;
  } });
  const clearButton = h("button", { onclick: () => { state.selected.clear(); saveSelection(); grid.refresh(); } }, "Clear selection");
  const columnsBox = h("div", { role: "group", "aria-label": "Columns to show" });
  const columnsMenu = h("details", { class: "columns" }, h("summary", { class: "button" }, "Columns"), columnsBox);
  const scroll = h("div", { class: "grid-scroll", tabindex: "-1" });
  const body = h("div", { class: "grid-body" });
  const head = h("div", { class: "grid-head", role: "row" });
  scroll.appendChild(body);
  const gridEl = h("div", { class: "grid", role: "grid", "aria-label": `Runs of ${experiment.name}`,
    "aria-multiselectable": "true", "data-testid": "runs-grid" }, head, scroll);
  fill(
    h("h1", {}, experiment.name, " ", h("span", { class: "muted" }, `(experiment ${experiment.id})`)),
    h("div", { class: "toolbar" },
      h("form", { role: "search", onsubmit: (ev) => { ev.preventDefault(); state.filter = filterInput.value; load(); } },
        h("label", { for: "filter" }, "Filter"), filterInput, h("button", { type: "submit" }, "Search")),
      h("label", { for: "lifecycle" }, "Lifecycle"), lifecycleSelect,
      columnsMenu, compareButton, clearButton, count),
    errorBox, gridEl,
  );

  function saveSelection() {
    sessionStorage.setItem(`gitml.sel.${experimentId}`, [...state.selected].join(","));
    compareButton.textContent = `Compare (${state.selected.size})`;
    compareButton.disabled = state.selected.size < 1;
  }
  saveSelection();

  let generation = 0;
  let fields = [];
  let total = 0;
  const pages = new Map(); // window number -> rows, or a promise while loading
  let active = 0; // the row that has the keyboard focus

  function columnsTemplate() {
    return ["36px", ...FIXED.map((c) => c.width), ...state.columns.map(() => "minmax(90px, 1fr)")].join(" ");
  }

  function renderHead() {
    const [orderField, orderDir] = state.order ? [state.order.replace(/\s+(ASC|DESC)$/i, ""), /\sASC$/i.test(state.order) ? "ascending" : "descending"] : ["", ""];
    const cell = (label, sort) => {
      const sorted = sort === orderField;
      return h("div", { role: "columnheader", "aria-sort": sorted ? orderDir : "none" },
        h("button", { type: "button", title: `Sort by ${label}`, onclick: () => {
          state.order = `${sort} ${sorted && orderDir === "descending" ? "ASC" : "DESC"}`;
          load();
        } }, label, sorted ? (orderDir === "ascending" ? " ▲" : " ▼") : ""));
    };
    head.style.gridTemplateColumns = columnsTemplate();
    head.replaceChildren(h("div", { role: "columnheader" }, h("span", { class: "sr-only" }, "Selected")),
      ...FIXED.map((c) => cell(c.label, c.sort)),
      ...state.columns.map((c) => cell(c.replace(/^metrics\./, "").replace(/^params\./, "").replace(/^tags\./, "#"), sortKey(c))));
    for (const [i, c] of state.columns.entries()) {
      head.children[FIXED.length + 1 + i].title = c;
    }
  }

  function renderColumnsMenu(keys) {
    const box = [];
    for (const [kind, label] of [["metrics", "Metrics"], ["params", "Params"], ["tags", "Tags"]]) {
      if (!keys[kind].length) continue;
      box.push(h("strong", {}, label));
      for (const key of keys[kind]) {
        const spec = `${kind}.${key}`;
        box.push(h("label", {}, h("input", { type: "checkbox", checked: state.columns.includes(spec),
          onchange: (ev) => {
            state.columns = ev.target.checked ? [...state.columns, spec] : state.columns.filter((c) => c !== spec);
            load({ keepKeys: true });
          } }), ` ${key}`));
      }
    }
    columnsBox.replaceChildren(...box);
  }

  function windowRequest(n, withKeys) {
    const body = {
      experiment_ids: [experimentId], filter: state.filter, order_by: state.order ? [state.order] : [],
      run_view_type: LIFECYCLES[state.lifecycle][1],
      offset: n * WINDOW, limit: WINDOW, with_keys: withKeys,
    };
    if (state.columns !== null) body.columns = state.columns;
    return body;
  }

  async function fetchWindow(n, withKeys = false) {
    const mine = generation;
    const data = await api("/ui/runs-table", windowRequest(n, withKeys));
    if (mine !== generation) return null;
    pages.set(n, data.rows);
    return data;
  }

  function rowAt(i) {
    const page = pages.get(Math.floor(i / WINDOW));
    return Array.isArray(page) ? page[i % WINDOW] : undefined;
  }

  function renderRows() {
    const top = scroll.scrollTop, height = scroll.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - 10);
    const last = Math.min(total - 1, Math.ceil((top + height) / ROW_H) + 10);
    const template = columnsTemplate();
    const rows = [];
    const missing = new Set();
    for (let i = first; i <= last; i++) {
      const row = rowAt(i);
      if (row === undefined) missing.add(Math.floor(i / WINDOW));
      rows.push(renderRow(i, row, template));
    }
    body.replaceChildren(...rows);
    for (const n of missing) {
      if (!pages.has(n)) {
        pages.set(n, fetchWindow(n).then(() => renderRows()).catch((err) => { pages.delete(n); errorBox.textContent = err.message; }));
      }
    }
  }

  function renderRow(i, row, template) {
    const attrs = { class: "grid-row", role: "row", tabindex: i === active ? "0" : "-1",
      style: `top:${i * ROW_H}px;grid-template-columns:${template}`, "aria-rowindex": String(i + 2),
      dataset: { index: String(i) } };
    if (row === undefined) return h("div", attrs, h("div", { role: "gridcell" }), h("div", { role: "gridcell", class: "muted" }, "…"));
    const record = Object.fromEntries(fields.map((f, k) => [f, row[k]]));
    const selected = state.selected.has(record.id);
    attrs["aria-selected"] = selected ? "true" : "false";
    attrs.dataset.run = record.id;
    const box = h("input", { type: "checkbox", checked: selected, tabindex: "-1", "aria-label": `Select ${record.name}`,
      onchange: (ev) => toggle(record.id, ev.target.checked) });
    return h("div", attrs,
      h("div", { role: "gridcell" }, box),
      h("div", { role: "gridcell" }, link(`#/runs/${record.id}`, record.name, { tabindex: "-1" }),
        record.parent_run_id ? h("span", { class: "muted", title: "nested run" }, " ↳") : null,
        record.dirty ? h("span", { class: "dirty", title: "code had uncommitted changes" }, " ✱") : null,
        record.lifecycle_stage === "deleted" ? [" ", h("span", { class: "badge deleted", "data-testid": "deleted" }, "deleted")] : null),
      h("div", { role: "gridcell" }, badge(record.status)),
      h("div", { role: "gridcell", class: "time" }, when(record.start_time)),
      ...state.columns.map((c) => {
        const v = record[c];
        const num = c.startsWith("metrics.");
        return h("div", { role: "gridcell", class: num ? "num" : "", title: v ?? "" }, v === null || v === undefined ? "" : num ? fmt(v === "NaN" ? NaN : v) : v);
      }));
  }

  function toggle(id, on) {
    if (on) state.selected.add(id); else state.selected.delete(id);
    saveSelection();
    renderRows();
  }

  function focusRow(i) {
    if (!total) return;
    active = Math.max(0, Math.min(total - 1, i));
    const y = active * ROW_H;
    if (y < scroll.scrollTop) scroll.scrollTop = y;
    else if (y + ROW_H > scroll.scrollTop + scroll.clientHeight) scroll.scrollTop = y + ROW_H - scroll.clientHeight;
    renderRows();
    const node = body.querySelector(`[data-index="${active}"]`);
    if (node) node.focus();
  }

  body.addEventListener("keydown", (ev) => {
    const row = ev.target.closest(".grid-row");
    if (!row) return;
    const i = Number(row.dataset.index);
    const pageRows = Math.max(1, Math.floor(scroll.clientHeight / ROW_H) - 1);
    const moves = { ArrowDown: i + 1, ArrowUp: i - 1, PageDown: i + pageRows, PageUp: i - pageRows, Home: 0, End: total - 1 };
    if (ev.key in moves) { ev.preventDefault(); focusRow(moves[ev.key]); return; }
    const record = rowAt(i);
    if (!record) return;
    if (ev.key === "Enter") { ev.preventDefault(); location.hash = `#/runs/${record[0]}`; }
    else if (ev.key === " ") { ev.preventDefault(); toggle(record[0], !state.selected.has(record[0])); focusRow(i); }
  });
  body.addEventListener("click", (ev) => {
    const row = ev.target.closest(".grid-row");
    if (row && ev.target.tagName !== "INPUT" && ev.target.tagName !== "A") { active = Number(row.dataset.index); row.focus(); renderRows(); body.querySelector(`[data-index="${active}"]`)?.focus(); }
  });
  let frame = 0;
  const onScroll = () => { if (!frame) frame = requestAnimationFrame(() => { frame = 0; renderRows(); }); };
  scroll.addEventListener("scroll", onScroll);
  const grid = { refresh: renderRows };

  async function load({ keepKeys = false } = {}) {
    generation += 1;
    pages.clear();
    errorBox.replaceChildren();
    filterInput.removeAttribute("aria-invalid");
    setQuery(`/experiments/${enc(experimentId)}`, { filter: state.filter, order: state.order,
      lifecycle: state.lifecycle === "active" ? null : state.lifecycle, cols: state.columns ? state.columns.join(",") : null });
    let data;
    try {
      if (prefetch) {
        data = await prefetch;
        pages.set(0, data.rows);
      } else {
        data = await fetchWindow(0, !keepKeys);
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) {
        filterInput.setAttribute("aria-invalid", "true");
        errorBox.replaceChildren(h("div", { class: "error", "data-testid": "filter-error" }, err.message));
        total = 0; body.replaceChildren(); count.textContent = "";
        return;
      }
      throw err;
    } finally {
      prefetch = null;
    }
    if (data === null) return;
    fields = data.fields;
    if (state.columns === null) state.columns = fields.slice(BASE_FIELDS);
    if (data.keys) renderColumnsMenu(data.keys);
    total = data.total;
    count.textContent = `${total.toLocaleString()} run${total === 1 ? "" : "s"}`;
    body.style.height = `${total * ROW_H}px`;
    gridEl.setAttribute("aria-rowcount", String(total + 1));
    active = Math.min(active, Math.max(0, total - 1));
    scroll.scrollTop = 0;
    renderHead();
    renderRows();
    // When the first rows are on screen: the 10,000-runs test measures this.
    performance.mark("gitml:runs-rendered");
    gridEl.dataset.ready = String(generation);
    announce(`${total} runs`);
  }

  await load();
  return () => { generation += 1; };
}

// -- one run ------------------------------------------------------------------------

const TEXT = /\.(txt|log|md|py|sh|toml|ini|cfg|csv|tsv|json|ya?ml|html|xml|MLmodel|requirements)$|(^|\/)(MLmodel|MLproject|requirements\.txt|conda\.yaml)$/i;
const IMAGE = /\.(png|jpe?g|gif|webp|svg|bmp)$/i;

async function runPage(runId) {
  const data = await api(`/ui/runs/${runId}`);
  const run = data.run;
  setTitle(run.name, [link("#/experiments", "Experiments"), link(`#/experiments/${enc(run.experiment_id)}`, data.experiment.name), run.name]);
  const code = data.code;
  const codeCell = code ? h("span", {},
    code.present ? link(`#/commits/${code.commit}`, short(code.commit), { class: "mono", "data-testid": "code-commit" }) : h("span", { class: "mono" }, short(code.commit)),
    " ", code.subject || "", code.branch ? h("span", { class: "muted" }, ` on ${code.branch} `) : " ",
    code.dirty ? h("span", { class: "badge dirty", "data-testid": "dirty", title: code.snapshot ? `snapshot ${code.snapshot}` : "uncommitted changes" }, "dirty") : null)
    : h("span", { class: "muted" }, "not recorded");
  const deleted = run.lifecycle_stage === "deleted";
  const metricKeys = Object.keys(run.metrics).sort();
  const charts = h("div", { class: "cards", "data-testid": "metric-charts" });
  const tools = chartTools(() => handles);
  let handles = [];
  fill(
    h("h1", {}, run.name, " ", badge(run.status), deleted ? [" ", h("span", { class: "badge deleted" }, "deleted")] : null),
    deleted ? h("p", { class: "notice", "data-testid": "deleted-notice" },
      "This run is deleted: the runs table lists it under Lifecycle “Deleted” or “All”, and the repository keeps all of it. ",
      h("code", {}, `gitml runs restore ${run.id}`), " brings it back.") : null,
    kv([
      ["Run id", h("span", { class: "mono" }, run.id)],
      ["Experiment", link(`#/experiments/${enc(run.experiment_id)}${deleted ? "?lifecycle=deleted" : ""}`, data.experiment.name)],
      ["Status", run.status],
      ["Started", when(run.start_time)],
      ["Ended", run.end_time ? `${when(run.end_time)} (${fmt((run.end_time - run.start_time) / 1000)} s)` : "—"],
      ["User", run.user],
      ["Source commit", codeCell],
      code && code.snapshot ? ["Snapshot", h("span", { class: "mono" }, short(code.snapshot))] : null,
      ["Run commits", `${data.commits} (tip ${short(data.commit)})`],
      ["Parent run", data.parent ? link(`#/runs/${data.parent.id}`, data.parent.name || short(data.parent.id), { "data-testid": "parent" }) : "—"],
      ["Child runs", data.children.length ? h("span", { "data-testid": "children" }, data.children.flatMap((c, i) => [i ? ", " : "", link(`#/runs/${c.id}`, c.name)])) : "—"],
      ["Registered as", data.models.length ? h("span", {}, data.models.flatMap((m, i) => [i ? ", " : "", link(`#/models/${enc(m.name)}/versions/${m.version}`, `${m.name} v${m.version}`)])) : "—"],
    ]),
    h("h2", {}, "Metrics"),
    metricKeys.length ? tools : h("p", { class: "muted" }, "No metrics."),
    charts,
    h("div", { class: "split" },
      h("section", { "aria-label": "Parameters" }, h("h2", {}, "Parameters"),
        pairs(run.params, { "data-testid": "params" })),
      h("section", { "aria-label": "Tags" }, h("h2", {}, "Tags"), pairs(tagsShown(run.tags, data.logged_models)))),
    h("h2", {}, "Artifacts"),
    artifactsBrowser(run.id, data.artifacts),
  );
  if (metricKeys.length) {
    const { series } = await api("/ui/metric-histories", { run_ids: [run.id], keys: metricKeys });
    handles = series.map((s) => {
      const card = h("div", { class: "card", dataset: { metric: s.key } }, h("h3", {}, s.key));
      const host = h("div", {});
      card.appendChild(host);
      charts.appendChild(card);
      return lineChart(host, [{ name: s.key, xs: s.steps, ts: s.timestamps, ys: s.values, color: PALETTE[0] }], { label: s.key, ...tools.options() });
    });
  }
  main.focus({ preventScroll: true });
}

// mlflow.log-model.history is a JSON list: one line per logged model reads better.
function tagsShown(tags, models) {
  if (!models) return tags;
  const lines = models.map((m) => h("div", {}, [m.artifact_path, m.flavors.join(", "), m.time].filter(Boolean).join(" · ")));
  return { ...tags, "mlflow.log-model.history": h("div", { "data-testid": "logged-models" }, lines) };
}

function pairs(map, attrs = {}) {
  const entries = Object.entries(map).sort(([a], [b]) => (a < b ? -1 : 1));
  if (!entries.length) return h("p", { class: "muted" }, "None.");
  return table(["Name", "Value"], entries.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", { class: "mono" }, v))), attrs);
}

function chartTools(getHandles) {
  const id = Math.random().toString(36).slice(2, 7);
  const slider = h("input", { type: "range", id: `smooth-${id}`, min: "0", max: "0.99", step: "0.01", value: "0", "data-testid": "smoothing" });
  const value = h("output", { for: `smooth-${id}` }, "0");
  const log = h("input", { type: "checkbox", id: `log-${id}`, "data-testid": "log-scale" });
  const xAxis = h("select", { id: `x-axis-${id}`, "data-testid": "x-axis" },
    [["step", "Step"], ["wall", "Wall time"], ["relative", "Relative time"]].map(([v, label]) => h("option", { value: v }, label)));
  const apply = () => { value.textContent = slider.value; for (const c of getHandles()) c.set(box.options()); };
  slider.addEventListener("input", apply);
  log.addEventListener("change", apply);
  xAxis.addEventListener("change", apply);
  const box = h("div", { class: "chart-tools" },
    h("label", { for: `x-axis-${id}` }, "X axis"), xAxis,
    h("label", { for: `smooth-${id}` }, "Smoothing"), slider, value,
    h("label", {}, log, " Log scale"),
    h("button", { type: "button", onclick: () => getHandles().forEach((c) => c.reset()) }, "Reset zoom"),
    h("span", { class: "muted" }, "Drag across a chart to zoom; Ctrl+wheel or + and − zoom; double-click or 0 resets."));
  box.options = () => ({ smoothing: Number(slider.value), logY: log.checked, xAxis: xAxis.value });
  return box;
}

function artifactsBrowser(runId, artifacts) {
  if (!artifacts.length) return h("p", { class: "muted" }, "No artifacts.");
  const preview = h("div", { class: "preview", "aria-live": "polite", "data-testid": "preview" }, h("p", { class: "muted" }, "Choose a file to preview it."));
  let urls = [];
  const buttons = artifacts.map((a) => h("li", {}, h("button", { type: "button", "aria-pressed": "false", dataset: { path: a.path },
    onclick: (ev) => open(a, ev.currentTarget) }, a.path, h("span", { class: "muted" }, ` ${size(a.size)}`))));
  async function open(a, button) {
    for (const b of buttons) b.firstChild.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-pressed", "true");
    urls.forEach(URL.revokeObjectURL); urls = [];
    const file = await blob(`/runs/${runId}/artifacts/${a.path.split("/").map(enc).join("/")}`);
    const url = URL.createObjectURL(file); urls.push(url);
    const name = a.path.split("/").pop();
    const head = h("p", {}, h("strong", {}, a.path), ` · ${size(a.size)} · sha256 `, h("span", { class: "mono" }, short(a.sha256, 16)), " · ",
      h("a", { href: url, download: name, "data-testid": "download" }, "Download"));
    let body;
    if (IMAGE.test(a.path)) {
      const typed = a.path.toLowerCase().endsWith(".svg") ? URL.createObjectURL(new Blob([file], { type: "image/svg+xml" })) : url;
      urls.push(typed);
      body = h("img", { src: typed, alt: a.path, "data-testid": "image-preview" });
    } else if (a.size > 2 * 1024 * 1024) {
      body = h("p", { class: "muted" }, "Too large to preview; download it.");
    } else if (/\.[ct]sv$/i.test(a.path)) {
      body = csvTable(await file.text(), a.path.toLowerCase().endsWith(".tsv") ? "\t" : ",");
    } else if (/\.json$/i.test(a.path)) {
      const raw = await file.text();
      let shown = raw;
      try { shown = JSON.stringify(JSON.parse(raw), null, 2); } catch { /* shown as it is */ }
      body = h("pre", { "data-testid": "text-preview", "data-kind": "json" }, shown);
    } else if (TEXT.test(a.path) || isText(await file.slice(0, 4096).arrayBuffer())) {
      const kind = /\.ya?ml$/i.test(a.path) ? "yaml" : "text";
      body = h("pre", { "data-testid": "text-preview", "data-kind": kind }, await file.text());
    } else {
      body = h("p", { class: "muted" }, "Binary file; download it.");
    }
    preview.replaceChildren(head, body);
  }
  return h("div", { class: "split" }, h("ul", { class: "files", "aria-label": "Artifacts", "data-testid": "artifacts" }, buttons), preview);
}

function isText(buffer) { return !new Uint8Array(buffer).includes(0); }
function size(n) { return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} kB` : `${(n / 1048576).toFixed(1)} MB`; }

function csvTable(textValue, sep) {
  const lines = textValue.split(/\r?\n/).filter((l) => l.length);
  const parse = (line) => {
    const out = []; let cell = "", quoted = false;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i];
      if (quoted) { if (ch === '"' && line[i + 1] === '"') { cell += '"'; i++; } else if (ch === '"') quoted = false; else cell += ch; }
      else if (ch === '"') quoted = true; else if (ch === sep) { out.push(cell); cell = ""; } else cell += ch;
    }
    out.push(cell);
    return out;
  };
  const [first, ...rest] = lines.map(parse);
  const shown = rest.slice(0, 200);
  return h("div", {}, table(first || [], shown.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))), { "data-testid": "csv-preview" }),
    rest.length > shown.length ? h("p", { class: "muted" }, `${rest.length - shown.length} more rows; download the file.`) : null);
}

// -- compare -------------------------------------------------------------------------

async function comparePage(query) {
  const ids = (query.get("runs") || "").split(",").filter(Boolean);
  setTitle("Compare runs", [link("#/experiments", "Experiments"), "Compare"]);
  if (!ids.length) { fill(h("h1", {}, "Compare runs"), h("p", {}, "Select runs in an experiment's table first.")); return; }
  const runs = await Promise.all(ids.map((id) => api(`/runs/${id}`)));
  const metricKeys = [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].sort();
  const paramKeys = [...new Set(runs.flatMap((r) => Object.keys(r.params)))].sort();
  const color = (i) => PALETTE[i % PALETTE.length];
  const onlyDiff = h("input", { type: "checkbox", id: "only-diff" });
  const diffBody = h("tbody", {});
  const value = (r, kind, key) => (kind === "params" ? r.params[key] : r.metrics[key]?.value);
  function drawDiff() {
    const rows = [];
    for (const [kind, keys] of [["params", paramKeys], ["metrics", metricKeys]]) {
      for (const key of keys) {
        const vals = runs.map((r) => value(r, kind, key));
        const differs = new Set(vals.map(String)).size > 1;
        if (onlyDiff.checked && !differs) continue;
        rows.push(h("tr", { class: differs ? "diff" : "", dataset: { key: `${kind}.${key}` } },
          h("th", { scope: "row" }, `${kind}.${key}`),
          vals.map((v) => h("td", { class: kind === "metrics" ? "num" : "mono" }, v === undefined ? "—" : kind === "metrics" ? fmt(v) : v))));
      }
    }
    diffBody.replaceChildren(...rows);
  }
  onlyDiff.addEventListener("change", drawDiff);
  const dims = [...paramKeys.map((k) => `params.${k}`), ...metricKeys.map((k) => `metrics.${k}`)];
  const values = runs.map((r) => ({ id: r.id, name: r.name, label: r.name,
    values: Object.fromEntries(dims.map((d) => { const [kind, ...k] = d.split("."); return [d, value(r, kind, k.join("."))]; })) }));
  const select = (id, label, chosen) => [h("label", { for: id }, label),
    h("select", { id }, dims.map((d) => h("option", { value: d, selected: d === chosen }, d)))];
  const [pcLabel, pcSelect] = select("pc-metric", "Colour by metric", dims.filter((d) => d.startsWith("metrics."))[0]);
  const [xLabel, xSelect] = select("scatter-x", "X", dims[0]);
  const [yLabel, ySelect] = select("scatter-y", "Y", dims.find((d) => d.startsWith("metrics.")) || dims[1]);
  const pcHost = h("div", { "data-testid": "parallel" });
  const scatterHost = h("div", { "data-testid": "scatter" });
  const drawPc = () => {
    const metric = pcSelect.value;
    const axes = [...paramKeys.map((k) => `params.${k}`).filter((d) => values.some((v) => v.values[d] !== undefined)), metric].filter(Boolean);
    parallelCoordinates(pcHost, values, axes);
  };
  const drawScatter = () => scatter(scatterHost, values.map((v) => ({ id: v.id, label: v.name, x: v.values[xSelect.value], y: v.values[ySelect.value] })), xSelect.value, ySelect.value);
  pcSelect.addEventListener("change", drawPc);
  xSelect.addEventListener("change", drawScatter);
  ySelect.addEventListener("change", drawScatter);
  const charts = h("div", { class: "cards", "data-testid": "compare-charts" });
  let handles = [];
  const tools = chartTools(() => handles);
  fill(
    h("h1", {}, `Compare ${runs.length} runs`),
    h("div", { class: "legend" }, runs.map((r, i) => h("span", { style: `--c:${color(i)}` }, link(`#/runs/${r.id}`, r.name)))),
    h("h2", {}, "Metrics"), tools, charts,
    h("h2", {}, "Differences"),
    h("label", {}, onlyDiff, " Only rows that differ"),
    h("table", { class: "data", "data-testid": "diff" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"), runs.map((r, i) => h("th", { scope: "col", style: `color:${color(i)}` }, r.name)))), diffBody),
    h("h2", {}, "Parallel coordinates"),
    h("div", { class: "toolbar" }, pcLabel, pcSelect), pcHost,
    h("h2", {}, "Scatter"),
    h("div", { class: "toolbar" }, xLabel, xSelect, yLabel, ySelect), scatterHost,
  );
  drawDiff();
  if (dims.length) { drawPc(); drawScatter(); }
  if (metricKeys.length) {
    const keys = metricKeys.slice(0, Math.max(1, Math.floor(400 / runs.length)));
    const { series } = await api("/ui/metric-histories", { run_ids: ids, keys });
    handles = keys.map((key) => {
      const card = h("div", { class: "card", dataset: { metric: key } }, h("h3", {}, key));
      const host = h("div", {});
      card.appendChild(host);
      charts.appendChild(card);
      const lines = series.filter((s) => s.key === key).map((s) => ({ name: s.run_name, xs: s.steps, ts: s.timestamps, ys: s.values, color: color(ids.indexOf(s.run_id)) }));
      return lineChart(host, lines, { label: key, ...tools.options() });
    });
  }
  main.focus({ preventScroll: true });
}

// -- models ----------------------------------------------------------------------------

const declared = (versions) => versions.map((v) => `v${v.version}${v.weight !== 100 ? ` (${v.weight}%)` : ""}`).join(" + ");

async function modelsPage() {
  setTitle("Models", ["Models"]);
  const models = await api("/ui/models");
  fill(h("h1", {}, "Registered models"),
    models.length ? table(["Name", "Versions", "Latest", "Stages", "Description"], models.map((m) => h("tr", { dataset: { model: m.name } },
      h("td", {}, link(`#/models/${enc(m.name)}`, m.name)),
      h("td", { class: "num" }, m.versions),
      h("td", {}, m.latest ? link(`#/models/${enc(m.name)}/versions/${m.latest}`, `v${m.latest}`) : "—"),
      h("td", {}, Object.entries(m.stages).map(([s, v]) => h("div", {}, h("strong", {}, s), `: ${declared(v)}`))),
      h("td", {}, m.description || ""))), { "data-testid": "models" })
      : h("p", { class: "muted" }, "No registered models yet."));
  main.focus({ preventScroll: true });
}

async function modelPage(name) {
  const data = await api(`/ui/models/${enc(name)}`);
  setTitle(name, [link("#/models", "Models"), name]);
  const vlink = (n) => link(`#/models/${enc(name)}/versions/${n}`, `v${n}`, { dataset: { version: String(n) } });
  const served = (list) => (list && list.length ? list.flatMap((v, i) => [i ? " + " : "", vlink(v.version), v.weight !== 100 ? ` (${v.weight}%)` : ""]) : ["nothing"]);
  fill(
    h("h1", {}, name),
    data.model.description ? h("p", {}, data.model.description) : null,
    h("h2", {}, "Stages"),
    Object.keys(data.stages).length ? table(["Stage", "Declares"], Object.entries(data.stages).map(([stage, d]) =>
      h("tr", { dataset: { stage } }, h("td", {}, stage), h("td", {}, served(d.versions), d.note ? h("span", { class: "muted" }, ` — ${d.note}`) : null))), { "data-testid": "stages" })
      : h("p", { class: "muted" }, "No stage declares a version of this model."),
    h("h2", {}, "Versions"),
    table(["Version", "Status", "Source run", "Digest", "Flavors", "Created", "By"], data.versions.map((v) => h("tr", { dataset: { version: String(v.version) } },
      h("td", {}, vlink(v.version)), h("td", {}, v.status),
      h("td", {}, link(`#/runs/${v.run_id}`, short(v.run_id), { class: "mono" }), " ", h("span", { class: "muted" }, v.model_path)),
      h("td", { class: "mono", title: v.digest }, short(v.digest, 19)),
      h("td", {}, v.flavors.join(", ")), h("td", {}, when(v.creation_time)), h("td", {}, v.user))), { "data-testid": "versions" }),
    h("h2", {}, "Stage history"),
    data.timeline.length ? h("ol", { class: "timeline", reversed: true, "data-testid": "timeline" }, [...data.timeline].reverse().map((e) => h("li", { dataset: { stage: e.stage, commit: e.commit } },
      h("div", {}, h("strong", {}, e.stage), ": ", served(e.before), " → ", served(e.after)),
      h("div", { class: "muted" }, e.time.replace("T", " ").replace("Z", ""), " · ", e.author, " · ", h("span", { class: "mono", title: e.commit }, short(e.commit)), " · ", e.subject),
      e.merge ? h("div", { class: "muted" }, "merged ", e.merge.branch || short(e.merge.commit), ` proposed by ${e.merge.proposed_by}`) : null)))
      : h("p", { class: "muted" }, "Never assigned to a stage."),
  );
  main.focus({ preventScroll: true });
}

async function versionPage(name, number) {
  const doc = await api(`/ui/models/${enc(name)}/versions/${number}`);
  setTitle(`${name} v${number}`, [link("#/models", "Models"), link(`#/models/${enc(name)}`, name), `v${number}`]);
  const run = doc.run;
  const code = run.code;
  fill(
    h("h1", {}, `${name} v${number}`, " ", h("span", { class: "badge" }, doc.status)),
    kv([
      ["URI", h("span", { class: "mono" }, doc.uri)],
      ["Digest", h("span", { class: "mono" }, doc.digest)],
      ["Source", h("span", { class: "mono" }, doc.source)],
      ["Flavors", doc.flavors.join(", ")],
      ["Registered", `${doc.created} by ${doc.user}`],
      doc.registration ? ["Registration commit", h("span", { class: "mono" }, short(doc.registration.commit))] : null,
      ["Stages now", doc.stages.length ? doc.stages.map((s) => `${s.stage} (${s.weight}%)`).join(", ") : "none"],
      ["Run", link(`#/runs/${run.id}`, `${run.name} (${short(run.id)})`, { "data-testid": "version-run" })],
      ["Code", code ? h("span", {}, code.present ? link(`#/commits/${code.commit}`, short(code.commit), { class: "mono", "data-testid": "version-code" }) : short(code.commit), " ", code.subject || "",
        code.dirty ? h("span", { class: "badge dirty" }, "dirty") : null) : "not recorded"],
    ]),
    h("h2", {}, "Lineage"),
    h("p", {}, "stage change → ", h("strong", {}, `v${number}`), " → ", link(`#/runs/${run.id}`, "run"), " → ", code && code.present ? link(`#/commits/${code.commit}`, "code commit") : "code"),
    h("h2", {}, "Stage history of this version"),
    doc.stage_history.length ? h("ol", { class: "timeline", "data-testid": "version-history" }, doc.stage_history.map((e) => h("li", {},
      h("div", {}, h("strong", {}, e.stage), `: ${e.change}`),
      h("div", { class: "muted" }, e.time, " · ", e.author, " · ", e.subject, e.merge ? ` · merged ${e.merge.branch || short(e.merge.commit)}` : ""))))
      : h("p", { class: "muted" }, "Never assigned to a stage."),
    h("h2", {}, "Metrics of the run"),
    table(["Metric", "Value"], Object.entries(run.metrics).map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, fmt(v))))),
  );
  main.focus({ preventScroll: true });
}

async function commitPage(sha) {
  const c = await api(`/ui/commits/${sha}`);
  setTitle(`commit ${short(sha)}`, ["Commit", short(sha)]);
  fill(
    h("h1", {}, c.subject || short(sha)),
    kv([
      ["Commit", h("span", { class: "mono", "data-testid": "commit-sha" }, c.sha)],
      ["Author", c.author],
      ["Time", c.iso_time],
      ["Parents", c.parents.length ? h("span", {}, c.parents.flatMap((p, i) => [i ? ", " : "", link(`#/commits/${p}`, short(p), { class: "mono" })])) : "none"],
    ]),
    h("h2", {}, "Message"),
    h("pre", { "data-testid": "commit-message" }, c.message),
    h("h2", {}, "Runs of this code"),
    c.runs.length ? h("ul", {}, c.runs.map((r) => h("li", {}, link(`#/runs/${r.id}`, r.name), " ", badge(r.status), r.dirty ? h("span", { class: "dirty" }, " dirty") : null)))
      : h("p", { class: "muted" }, "No run recorded this commit."),
  );
  main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
route();
