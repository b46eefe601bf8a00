// Small SVG charts: metric lines (zoom, smoothing, log scale), parallel
// coordinates and scatter plots. No library: the UI must work with no
// network access and stay light.

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const MAX_DRAWN = 2000; // points per series; longer histories are thinned per pixel column

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, value, anchor = "middle", cls = null) {
  const t = el("text", { x, y, "text-anchor": anchor }, parent);
  if (cls) t.setAttribute("class", cls);
  t.textContent = value;
  return t;
}

export function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "NaN";
  if (typeof v !== "number") return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(2);
  return Number(v.toPrecision(4)).toString();
}

// The smallest of 1, 2 or 5 times a power of ten that is at least x.
function nice(x) {
  const mag = 10 ** Math.floor(Math.log10(x));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= x) || x;
}

function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const step = nice((hi - lo) / count);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

// TensorBoard's smoothing: an exponential moving average, debiased at the start.
export function smooth(ys, weight) {
  if (!weight) return ys.slice();
  const out = [];
  let last = 0, n = 0;
  for (const y of ys) {
    if (!Number.isFinite(y)) { out.push(y); continue; }
    last = last * weight + (1 - weight) * y;
    n += 1;
    out.push(last / (1 - weight ** n));
  }
  return out;
}

// Time axes: ticks fall on whole seconds, minutes, hours or days (UTC), as a clock reads.
const SECOND = 1000, MINUTE = 60 * SECOND, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
const TIME_STEPS = [
  ...[1, 2, 5, 10, 15, 30].map((n) => n * SECOND), ...[1, 2, 5, 10, 15, 30].map((n) => n * MINUTE),
  ...[1, 2, 3, 6, 12].map((n) => n * HOUR), ...[1, 2, 7, 14, 30, 91, 182, 365].map((n) => n * DAY),
];

function timeStep(lo, hi, count) {
  const want = (hi - lo) / count;
  if (want < SECOND) return nice(want);
  return TIME_STEPS.find((s) => s >= want) || Math.ceil(want / (365 * DAY)) * 365 * DAY;
}

function timeTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const step = timeStep(lo, hi, count), out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(v);
  return out;
}

// A wall-clock tick (ms since the epoch, in UTC as the rest of the UI), as precise as the
// ticks' spacing needs and dated when the axis spans days: "16:00:05", "11-24 16:00".
function clock(ms, step, span) {
  const iso = new Date(ms).toISOString();
  if (step >= DAY) return iso.slice(0, 10);
  if (span >= DAY) return iso.slice(5, 16).replace("T", " ");
  if (step < SECOND) return iso.slice(11, 23);
  return iso.slice(11, step < MINUTE ? 19 : 16);
}

// A length of time (ms): "0 s", "1.5 s", "28.5 s", "1 min 15 s", "2 h 30 min", "3 d 4 h".
export function duration(ms) {
  const sign = ms < 0 ? "−" : "";
  let rest = Math.abs(ms);
  if (rest < MINUTE) return `${sign}${Number((rest / SECOND).toPrecision(3))} s`;
  const parts = [];
  for (const [size, unit] of [[DAY, "d"], [HOUR, "h"], [MINUTE, "min"], [SECOND, "s"]]) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n || parts.length) parts.push(n ? `${n} ${unit}` : null);
  }
  return sign + parts.slice(0, 2).filter(Boolean).join(" ");
}

// The x-axis choices of a line chart: the step, the wall-clock time of each point, or
// the time since the series' first point (which lays runs started apart over each other).
// Each has the point's x, the tick labels, the label of one point's x (the hover) and
// the half-width of the axis drawn around a single x.
const X_AXES = {
  step: { name: "step", of: (s) => s.xs, ticks, tick: fmt, at: fmt, single: 1 },
  wall: { name: "time (UTC)", of: (s) => s.ts, ticks: timeTicks, tick: clock,
    at: (v) => new Date(v).toISOString().slice(0, 19).replace("T", " "), single: SECOND },
  relative: { name: "relative time", of: (s) => { const first = s.ts.reduce((a, b) => Math.min(a, b), Infinity); return s.ts.map((t) => t - first); },
    ticks: timeTicks, tick: duration, at: duration, single: SECOND },
};

function thin(xs, ys, buckets) {
  // Keep the first, the minimum and the maximum of each bucket: peaks survive.
  if (xs.length <= MAX_DRAWN) return [xs, ys];
  const size = xs.length / buckets, ox = [], oy = [];
  for (let b = 0; b < buckets; b++) {
    const from = Math.floor(b * size), to = Math.min(xs.length, Math.floor((b + 1) * size));
    let lo = from, hi = from;
    for (let i = from; i < to; i++) { if (ys[i] < ys[lo]) lo = i; if (ys[i] > ys[hi]) hi = i; }
    for (const i of [...new Set([from, lo, hi])].sort((a, b) => a - b)) { ox.push(xs[i]); oy.push(ys[i]); }
  }
  return [ox, oy];
}

// A line chart of series [{name, color, xs (steps), ts (timestamps, ms), ys}].
// opts: {smoothing, logY, label, xAxis: "step" | "wall" | "relative"}.
// Drag across the plot to zoom into steps, Ctrl+wheel zooms around the pointer,
// double-click (or the Reset button, or the 0 key) restores the full range.
export function lineChart(host, series, opts = {}) {
  const W = 460, H = 230, L = 48, R = 10, T = 10, B = 28;
  const state = { domain: null, xAxis: "step", ...opts };
  host.classList.add("line-chart");
  host.replaceChildren();
  const svg = el("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", tabindex: "0" }, host);
  const legend = document.createElement("div");
  legend.className = "legend";
  host.appendChild(legend);
  const axis = () => X_AXES[state.xAxis] || X_AXES.step;

  function prepared() {
    return series.map((s) => {
      let xs = axis().of(s), ys = s.ys;
      if (xs !== s.xs) {
        // Points come in step order; a time axis draws (and smooths) them in time order.
        const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b]);
        xs = order.map((i) => xs[i]); ys = order.map((i) => ys[i]);
      }
      ys = smooth(ys, state.smoothing || 0);
      const keep = xs.map((_, i) => Number.isFinite(ys[i]) && (!state.logY || ys[i] > 0));
      xs = xs.filter((_, i) => keep[i]); ys = ys.filter((_, i) => keep[i]);
      return { ...s, sx: xs, sy: state.logY ? ys.map(Math.log10) : ys, raw: s.ys };
    });
  }

  function draw() {
    svg.replaceChildren();
    const ax = axis();
    svg.setAttribute("aria-label", `${opts.label || "metric"} over ${ax.name}, ${series.length} series; drag or use + and - to zoom, 0 to reset`);
    const data = prepared();
    let x0 = Infinity, x1 = -Infinity;
    for (const s of data) for (const x of s.sx) { if (x < x0) x0 = x; if (x > x1) x1 = x; }
    if (!Number.isFinite(x0)) { text(svg, W / 2, H / 2, "no finite values"); return; }
    if (state.domain) [x0, x1] = state.domain;
    // One x (a single point, or points logged at one time): an axis around it, labelled there only.
    const singleX = x1 === x0 ? x0 : null;
    if (singleX !== null) { x0 -= ax.single; x1 += ax.single; }
    let y0 = Infinity, y1 = -Infinity;
    for (const s of data) s.sx.forEach((x, i) => {
      if (x >= x0 && x <= x1) { const y = s.sy[i]; if (y < y0) y0 = y; if (y > y1) y1 = y; }
    });
    if (!Number.isFinite(y0)) { y0 = 0; y1 = 1; }
    // One value (a single point, or a constant): an axis around it, with the value itself a tick.
    const flat = y1 === y0 ? y0 : null;
    const spread = flat === null ? 0 : flat === 0 ? 1 : nice(Math.abs(flat) * 0.1);
    y0 -= spread; y1 += spread;
    const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    // A label centred on a point near the plot's right end would run off the chart.
    const edge = (px) => (px > W - R - 24 ? "end" : "middle");
    state.invert = (px) => x0 + ((px - L) / (W - L - R)) * (x1 - x0);
    el("clipPath", { id: clipId }, svg).appendChild(el("rect", { x: L, y: T, width: W - L - R, height: H - T - B }));
    const yTicks = flat === null ? ticks(y0, y1) : [flat - spread, flat, flat + spread];
    for (const v of yTicks) {
      el("line", { class: "grid-line", x1: L, x2: W - R, y1: sy(v), y2: sy(v) }, svg);
      text(svg, L - 4, sy(v) + 3, state.logY ? fmt(10 ** v) : fmt(v), "end", "y-tick");
    }
    const xTicks = singleX !== null ? [singleX] : ax.ticks(x0, x1, 6);
    const xStep = xTicks.length > 1 ? xTicks[1] - xTicks[0] : ax.single;
    for (const v of xTicks) {
      if (ax === X_AXES.step && Math.abs(v - Math.round(v)) > 1e-9 && x1 - x0 >= 2) continue; // steps are integers
      el("line", { class: "axis", x1: sx(v), x2: sx(v), y1: H - B, y2: H - B + 4 }, svg);
      text(svg, sx(v), H - B + 14, ax.tick(v, xStep, x1 - x0), edge(sx(v)), "x-tick");
    }
    el("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }, svg);
    el("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }, svg);
    text(svg, W - R, H - 2, ax.name, "end", "x-name");
    const g = el("g", { "clip-path": `url(#${clipId})` }, svg);
    legend.replaceChildren();
    state.drawn = [];
    state.sx = sx;
    state.hover = el("line", { class: "hover", x1: 0, x2: 0, y1: T, y2: H - B, visibility: "hidden" }, svg);
    data.forEach((s, n) => {
      const idx = [];
      s.sx.forEach((x, i) => { if (x >= x0 && x <= x1) idx.push(i); });
      const [xs, ys] = thin(idx.map((i) => s.sx[i]), idx.map((i) => s.sy[i]), W - L - R);
      const color = s.color || PALETTE[n % PALETTE.length];
      const d = xs.map((x, i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(ys[i]).toFixed(1)}`).join("");
      const path = el("path", { class: "series", d: d || "M0,0", stroke: color,
        "data-series": s.name, "data-points": String(xs.length) }, g);
      const title = el("title", {}, path);
      title.textContent = s.name;
      if (xs.length === 1) {
        // A lone point has no line to see: a marker, and its value above it (both whole
        // at the plot's edge, where the clip would halve them).
        el("circle", { class: "point", cx: sx(xs[0]), cy: sy(ys[0]), r: 4.5, fill: color }, svg);
        text(svg, sx(xs[0]), sy(ys[0]) - 9, fmt(state.logY ? 10 ** ys[0] : ys[0]), edge(sx(xs[0])), "point-label");
      }
      const item = document.createElement("span");
      item.style.setProperty("--c", color);
      const lastY = s.sy.length ? s.sy[s.sy.length - 1] : NaN;
      item.textContent = `${s.name}: ${fmt(state.logY ? 10 ** lastY : lastY)}`;
      legend.appendChild(item);
      state.drawn.push({ name: s.name, xs: s.sx, ys: s.sy, item, last: item.textContent });
    });
    host.dataset.series = String(data.length);
    host.dataset.zoomed = state.domain ? "true" : "false";
  }

  const clipId = `clip${Math.random().toString(36).slice(2, 9)}`;
  const toSvgX = (ev) => {
    const box = svg.getBoundingClientRect();
    return ((ev.clientX - box.left) / box.width) * W;
  };
  let brushStart = null, brush = null;
  svg.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    svg.setPointerCapture(ev.pointerId); // the drag ends here even outside the chart
    brushStart = toSvgX(ev);
    brush = el("rect", { class: "brush", x: brushStart, y: T, width: 0, height: H - T - B }, svg);
  });
  svg.addEventListener("pointermove", (ev) => {
    if (brush === null) return hoverAt(state.invert(toSvgX(ev)));
    const x = toSvgX(ev);
    brush.setAttribute("x", Math.min(x, brushStart));
    brush.setAttribute("width", Math.abs(x - brushStart));
  });
  svg.addEventListener("pointerup", (ev) => {
    if (brush === null) return;
    const x = toSvgX(ev), a = Math.min(x, brushStart), b = Math.max(x, brushStart);
    brush = null;
    if (b - a > 4) zoomTo(state.invert(a), state.invert(b)); else draw();
  });
  svg.addEventListener("dblclick", () => reset());
  svg.addEventListener("pointerleave", () => hoverAt(null));
  // The values at the step under the pointer, in the legend (where a screen reader finds them).
  function hoverAt(x) {
    if (!state.drawn) return;
    let shown = null;
    for (const d of state.drawn) {
      if (x === null || !d.xs.length) { d.item.textContent = d.last; continue; }
      let lo = 0, hi = d.xs.length - 1;
      while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (d.xs[mid] < x) lo = mid; else hi = mid; }
      const i = Math.abs(d.xs[lo] - x) <= Math.abs(d.xs[hi] - x) ? lo : hi;
      shown = d.xs[i];
      d.item.textContent = `${d.name} @ ${axis().at(d.xs[i])}: ${fmt(state.logY ? 10 ** d.ys[i] : d.ys[i])}`;
    }
    if (shown === null) { state.hover.setAttribute("visibility", "hidden"); return; }
    const px = state.sx(shown).toFixed(1);
    state.hover.setAttribute("x1", px); state.hover.setAttribute("x2", px);
    state.hover.setAttribute("visibility", "visible");
  }
  svg.addEventListener("wheel", (ev) => {
    if (!ev.ctrlKey && !ev.metaKey) return; // a plain wheel scrolls the page
    ev.preventDefault();
    zoomAround(state.invert(toSvgX(ev)), ev.deltaY > 0 ? 1.25 : 0.8);
  }, { passive: false });
  svg.addEventListener("keydown", (ev) => {
    if (ev.key === "+" || ev.key === "=") zoomAround(null, 0.8);
    else if (ev.key === "-") zoomAround(null, 1.25);
    else if (ev.key === "0") reset();
    else return;
    ev.preventDefault();
  });
  function fullRange() {
    let a = Infinity, b = -Infinity;
    for (const s of series) for (const x of axis().of(s)) { if (x < a) a = x; if (x > b) b = x; }
    return [a, b];
  }
  function zoomTo(a, b) { state.domain = [a, b]; draw(); }
  function zoomAround(center, factor) {
    const [a, b] = state.domain || fullRange();
    const c = center ?? (a + b) / 2;
    const [fa, fb] = fullRange();
    const na = Math.max(fa, c - (c - a) * factor), nb = Math.min(fb, c + (b - c) * factor);
    if (nb - na <= 0) return;
    if (na <= fa && nb >= fb) reset(); else zoomTo(na, nb);
  }
  function reset() { state.domain = null; draw(); }
  draw();
  return {
    set(changes) {
      if (changes.xAxis !== undefined && changes.xAxis !== state.xAxis) state.domain = null; // a zoom in other units
      Object.assign(state, changes);
      draw();
    },
    zoomTo, reset,
  };
}

function scaleOf(values, pad5 = false) {
  const nums = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  if (nums.length === values.filter((v) => v !== null && v !== undefined).length && nums.length) {
    let lo = Math.min(...nums), hi = Math.max(...nums);
    if (lo === hi) { lo -= 1; hi += 1; }
    const labels = ticks(lo, hi, 4);
    const pad = pad5 ? (hi - lo) * 0.06 : 0;
    const a = lo - pad, b = hi + pad;
    return { kind: "num", lo, hi, at: (v) => (v - a) / (b - a), labels };
  }
  const cats = [...new Set(values.filter((v) => v !== null && v !== undefined).map(String))].sort();
  const at = pad5 ? (v) => (cats.indexOf(String(v)) + 0.5) / cats.length
    : (v) => (cats.length < 2 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1));
  return { kind: "cat", cats, at, labels: cats };
}

export function numeric(v) {
  if (typeof v === "number") return v;
  if (typeof v === "string" && v.trim() !== "" && Number.isFinite(Number(v))) return Number(v);
  return v;
}

// Parallel coordinates: one vertical axis per dimension, one line per run,
// coloured by the last dimension (the chosen metric).
export function parallelCoordinates(host, rows, dims) {
  const W = 760, H = 300, T = 24, B = 24, X = 60;
  host.replaceChildren();
  const svg = el("svg", { class: "chart wide", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `parallel coordinates of ${dims.join(", ")} over ${rows.length} runs` }, host);
  const scales = dims.map((d) => scaleOf(rows.map((r) => numeric(r.values[d]))));
  const xAt = (i) => (dims.length < 2 ? W / 2 : X + (i * (W - 2 * X)) / (dims.length - 1));
  const yAt = (s, v) => T + (1 - s.at(v)) * (H - T - B);
  const colour = scales[scales.length - 1];
  let drawn = 0;
  for (const r of rows) {
    const pts = [];
    dims.forEach((d, i) => {
      const v = numeric(r.values[d]);
      if (v !== null && v !== undefined) pts.push(`${xAt(i).toFixed(1)},${yAt(scales[i], v).toFixed(1)}`);
    });
    if (pts.length < 2) continue;
    const last = numeric(r.values[dims[dims.length - 1]]);
    const t = colour && last !== undefined && last !== null ? colour.at(last) : 0.5;
    const line = el("polyline", { class: "pc-line", points: pts.join(" "),
      stroke: `hsl(${(240 - 200 * t).toFixed(0)} 70% 50%)`, "data-run": r.id }, svg);
    el("title", {}, line).textContent = r.name;
    drawn += 1;
  }
  dims.forEach((d, i) => {
    const s = scales[i];
    el("line", { class: "axis", x1: xAt(i), x2: xAt(i), y1: T, y2: H - B }, svg);
    text(svg, xAt(i), 12, d);
    for (const label of s.labels) {
      const v = s.kind === "num" ? label : label;
      text(svg, xAt(i) + 4, yAt(s, v) + 3, s.kind === "num" ? fmt(label) : label, "start");
    }
  });
  host.dataset.lines = String(drawn);
}

// A scatter of points [{x, y, label}] with numeric or categorical axes.
export function scatter(host, points, xName, yName) {
  const W = 560, H = 320, L = 56, R = 14, T = 16, B = 34;
  host.replaceChildren();
  const svg = el("svg", { class: "chart medium", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${yName} against ${xName}, ${points.length} runs` }, host);
  const xs = scaleOf(points.map((p) => numeric(p.x)), true);
  const ys = scaleOf(points.map((p) => numeric(p.y)), true);
  const px = (v) => L + xs.at(v) * (W - L - R), py = (v) => T + (1 - ys.at(v)) * (H - T - B);
  el("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }, svg);
  el("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }, svg);
  for (const v of xs.labels) text(svg, px(v), H - B + 14, xs.kind === "num" ? fmt(v) : v);
  for (const v of ys.labels) text(svg, L - 4, py(v) + 3, ys.kind === "num" ? fmt(v) : v, "end");
  text(svg, W - R, H - 4, xName, "end");
  text(svg, L + 6, T + 4, yName, "start");
  let drawn = 0;
  points.forEach((p, i) => {
    const x = numeric(p.x), y = numeric(p.y);
    if (x === null || x === undefined || y === null || y === undefined) return;
    const dot = el("circle", { class: "dot", cx: px(x), cy: py(y), r: 4,
      fill: PALETTE[i % PALETTE.length], "data-run": p.id }, svg);
    el("title", {}, dot).textContent = `${p.label}: ${fmt(x)}, ${fmt(y)}`;
    drawn += 1;
  });
  host.dataset.points = String(drawn);
}
