// The gridnode dashboard: plain DOM code, no build step, nothing fetched from elsewhere.
// Data comes from the node's API with the HttpOnly cookie set by POST /api/v1/login; live
// changes arrive over the WebSocket /api/v1/ws (resumed with ?since= after a disconnect).
"use strict";

const CHART_INTERVALS = 48;
const REFRESH_MS = 5000;
const state = { session: null, lastId: -1, ws: null, retryMs: 1000, timer: null,
                meters: new Map(), pending: new Map() };

const $ = (sel) => document.querySelector(sel);

// h("div", {class: "x"}, "text", child): an element whose strings are text, never HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

class Unauthorized extends Error {}

async function api(path, options) {
  const resp = await fetch(path, { credentials: "same-origin", ...(options || {}) });
  if (resp.status === 401) throw new Unauthorized(path);
  if (resp.status === 204) return null;
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.detail || `${path}: ${resp.status}`);
  return body;
}

// -- formatting ---------------------------------------------------------------------------

const num = (v, digits = 0) => (v === null || v === undefined) ? "-" :
  Number(v).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
const kwh = (wh) => (wh === null || wh === undefined) ? "-" : `${num(wh / 1000, 3)} kWh`;
const short = (s) => s ? `${s.slice(0, 8)}…${s.slice(-6)}` : "-";

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function duration(s) {
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

const time = (unix) => new Date(unix * 1000).toISOString().slice(11, 16);

// -- views --------------------------------------------------------------------------------

async function loadNode() {
  const node = await api("/health");
  $("#node-id").textContent = node.node_id;
  $("#node-info").textContent = `v${node.version} · up ${duration(node.uptime_s)}`;
  const chain = await api("/api/v1/chain");
  const box = $("#chain");
  box.replaceChildren();
  if (!chain.configured) { box.textContent = "no chain configured"; return; }
  for (const e of chain.endpoints) {
    box.append(h("div", {},
      h("span", { class: `badge ${e.healthy ? "ok" : "bad"}` }, e.healthy ? "healthy" : "unhealthy"),
      " ", h("span", { class: "mono" }, e.url),
      ` · slot ${num(e.slot)} · lag ${e.lag_slots} · ${e.errors}/${e.requests} errors`,
      e.last_error ? h("div", { class: "error" }, e.last_error) : null));
  }
  box.append(h("div", { class: "muted" }, `block height ${num(chain.block_height)} · blockhash age ` +
    (chain.blockhash_age_s === null ? "-" : `${chain.blockhash_age_s.toFixed(1)} s`) +
    ` · ${chain.commitment}`));
}

async function loadMeters() {
  const { meters } = await api("/api/v1/meters");
  const grid = $("#meters");
  if (!meters.length) { grid.replaceChildren(h("p", { class: "muted" }, "no meters")); return; }
  const seen = new Set();
  for (const m of meters) {
    seen.add(m.meter_id);
    let card = state.meters.get(m.meter_id);
    if (!card) {
      card = { el: h("article", { class: "meter", "data-meter": m.meter_id }), chart: null };
      state.meters.set(m.meter_id, card);
      grid.querySelector("p.muted")?.remove();
      grid.append(card.el);
      loadIntervals(m.meter_id);
    }
    renderMeter(card, m);
  }
  for (const [id, card] of state.meters) {
    if (!seen.has(id)) { card.el.remove(); state.meters.delete(id); }
  }
}

function renderMeter(card, m) {
  const stateName = m.state || "unknown";
  const rejected = Object.entries(m.rejections || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  const head = h("h3", {}, h("span", {}, m.meter_id),
    h("span", { class: `badge ${stateName}` }, stateName));
  const power = h("div", { class: "power" }, m.power_w === null ? "-" : `${num(m.power_w)} W`);
  const facts = h("dl", {},
    h("dt", {}, "import"), h("dd", {}, kwh(m.import_wh)),
    h("dt", {}, "export"), h("dd", {}, kwh(m.export_wh)),
    h("dt", {}, "voltage"), h("dd", {}, m.voltage_v === null ? "-" : `${num(m.voltage_v, 1)} V`),
    h("dt", {}, "last reading"), h("dd", {}, ago(m.last_reading_at)),
    h("dt", {}, "readings"), h("dd", {}, `${num(m.accepted)} ok · ${num(m.rejected)} rejected`),
    rejected ? [h("dt", {}, "rejections"), h("dd", {}, rejected)] : null,
    m.last_error ? [h("dt", {}, "last error"), h("dd", { class: "error" }, m.last_error)] : null);
  const chart = card.chart || h("p", { class: "muted" }, "loading intervals…");
  card.el.replaceChildren(head, power, facts, chart,
    h("div", { class: "legend" }, h("b", { class: "imp" }, "■"), " import ",
      h("b", { class: "exp" }, "■"), " export per interval (Wh)"));
}

async function loadIntervals(meterId) {
  const now = Math.floor(Date.now() / 1000);
  const q = `from=${now - 86400}&to=${now + 86400}&limit=10000`;
  const { intervals } = await api(`/api/v1/meters/${encodeURIComponent(meterId)}/intervals?${q}`);
  const card = state.meters.get(meterId);
  if (!card) return;
  const fresh = chart(intervals.slice(-CHART_INTERVALS));
  if (card.chart && card.chart.isConnected) card.chart.replaceWith(fresh);
  card.chart = fresh;
  if (!fresh.isConnected) {
    const placeholder = card.el.querySelector("p.muted");
    if (placeholder) placeholder.replaceWith(fresh);
  }
}

function chart(intervals) {
  const W = 300, H = 110, top = 12, bottom = 14;
  const el = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
                          role: "img", "data-count": intervals.length });
  el.dataset.count = String(intervals.length);
  if (!intervals.length) {
    el.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no closed interval yet"));
    return el;
  }
  const maxImp = Math.max(1, ...intervals.map((i) => i.import_wh));
  const maxExp = Math.max(0, ...intervals.map((i) => i.export_wh));
  const span = maxImp + maxExp;
  const usable = H - top - bottom;
  const zero = top + usable * maxImp / span;
  const slot = W / CHART_INTERVALS;
  const x0 = W - slot * intervals.length;
  el.append(svg("line", { x1: 0, x2: W, y1: zero, y2: zero }));
  intervals.forEach((iv, n) => {
    const x = x0 + n * slot + slot * 0.1, w = slot * 0.8;
    const hi = usable * iv.import_wh / span, he = usable * iv.export_wh / span;
    const label = `${time(iv.interval_start)}-${time(iv.interval_end)} UTC: import ${iv.import_wh} Wh, export ${iv.export_wh} Wh`;
    el.append(svg("rect", { class: "bar imp", x, y: zero - hi, width: w, height: Math.max(hi, 0.5),
                            "data-interval": iv.interval_start }, svg("title", {}, label)));
    if (iv.export_wh > 0) {
      el.append(svg("rect", { class: "bar exp", x, y: zero, width: w, height: he },
                    svg("title", {}, label)));
    }
  });
  el.append(svg("text", { x: 2, y: 9 }, `${num(maxImp)} Wh`));
  el.append(svg("text", { x: 2, y: H - 3 }, `${time(intervals[0].interval_start)} UTC`));
  el.append(svg("text", { x: W - 2, y: H - 3, "text-anchor": "end" },
                `${time(intervals[intervals.length - 1].interval_end)}`));
  return el;
}

async function loadOutbox() {
  const s = await api("/api/v1/transactions/stats");
  const rate = s.success_rate === null ? "-" : `${(s.success_rate * 100).toFixed(1)} %`;
  const avg = s.avg_confirmation_time_seconds === null ? "-" :
    `${s.avg_confirmation_time_seconds.toFixed(1)} s`;
  $("#stats").replaceChildren(...[["total", s.total_count], ["pending", s.pending_count],
    ["submitted", s.submitted_count], ["confirmed", s.confirmed_count], ["failed", s.failed_count],
    ["in flight", s.processing_count], ["success", rate], ["avg confirmation", avg]]
    .map(([k, v]) => h("div", { "data-stat": k }, h("b", {}, typeof v === "number" ? num(v) : v),
                       h("span", { class: "muted" }, k))));
  const { transactions } = await api("/api/v1/transactions/user?limit=15");
  $("#operations tbody").replaceChildren(...transactions.map((t) => h("tr",
    { "data-op": t.operation_id, onclick: () => showDetail(t.operation_id) },
    h("td", {}, t.operation_id), h("td", {}, t.tx_type),
    h("td", {}, h("span", { class: `badge ${statusClass(t.status)}` }, t.status)),
    h("td", { class: "mono" }, short(t.signature)), h("td", {}, ago(t.created_at)))));
  if (!transactions.length) {
    $("#operations tbody").append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "no operations")));
  }
}

function statusClass(status) {
  if (status === "finalized" || status === "confirmed") return "ok";
  if (["failed", "expired", "parked"].includes(status)) return "bad";
  return "warn";
}

async function showDetail(id) {
  const d = await api(`/api/v1/transactions/${id}`);
  const body = $("#detail-body");
  body.replaceChildren(h("div", {},
    h("h2", {}, `#${d.operation_id} ${d.tx_type} `,
      h("span", { class: `badge ${statusClass(d.status)}` }, d.status)),
    h("p", { class: "mono" }, d.idempotency_key),
    d.last_error ? h("p", { class: "error" }, d.last_error) : null,
    h("h3", {}, "Signed transactions"),
    d.transactions.length ? h("table", {}, h("thead", {}, h("tr", {},
      h("th", {}, "signature"), h("th", {}, "status"), h("th", {}, "slot"), h("th", {}, "fee"))),
      h("tbody", {}, d.transactions.map((t) => h("tr", { class: "signature" },
        h("td", { class: "mono" }, t.signature), h("td", {}, t.observed_status),
        h("td", {}, num(t.slot)), h("td", {}, t.fee_lamports === null ? "-" : `${t.fee_lamports} lamports`)))))
      : h("p", { class: "muted" }, "none signed yet"),
    h("h3", {}, "History"),
    h("ul", {}, d.history.map((x) => h("li", {},
      `${x.at.slice(0, 19).replace("T", " ")} ${x.old_status || "-"} → ${x.new_status}: ${x.reason}`))),
    h("h3", {}, "Payload"), h("pre", {}, JSON.stringify(d.payload, null, 2)),
    d.events.length ? [h("h3", {}, "Events"), h("pre", {}, JSON.stringify(d.events, null, 2))] : null));
  const dialog = $("#detail");
  if (!dialog.open) dialog.showModal();
}

async function loadAlerts() {
  const list = $("#alerts");
  if (state.session.role === "user") { $("#alerts-view").hidden = true; return; }
  const { alerts } = await api("/api/v1/alerts");
  const raised = alerts.filter((a) => a.state === "raised");
  list.replaceChildren(...raised.map((a) => h("li", { class: "raised", "data-alert": a.name },
    h("span", { class: "badge bad" }, a.name), " ", a.detail, h("span", { class: "muted" },
      ` (since ${ago(a.changed_at)})`))));
  if (!raised.length) list.append(h("li", { class: "muted" }, "none"));
}

// -- live updates -------------------------------------------------------------------------

function later(key, fn, ms = 300) {
  if (state.pending.has(key)) return;
  state.pending.set(key, setTimeout(() => { state.pending.delete(key); guard(fn()); }, ms));
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/api/v1/ws?since=${state.lastId}`);
  state.ws = ws;
  ws.onopen = () => { state.retryMs = 1000; setLive(true); };
  ws.onmessage = (msg) => {
    const e = JSON.parse(msg.data);
    state.lastId = Math.max(state.lastId, e.id);
    if (e.type === "interval.closed" && e.meter_id) {
      later(`iv:${e.meter_id}`, () => loadIntervals(e.meter_id));
      later("meters", loadMeters);
    } else if (e.type === "operation.status") {
      later("outbox", loadOutbox);
    } else if (e.type.startsWith("alert.")) {
      later("alerts", loadAlerts);
    }
  };
  ws.onclose = () => {
    setLive(false);
    if (state.ws !== ws || !state.session) return;
    setTimeout(() => { if (state.session) connect(); }, state.retryMs);
    state.retryMs = Math.min(state.retryMs * 2, 30000);
  };
}

function setLive(on) {
  const b = $("#live");
  b.className = `badge ${on ? "on" : "off"}`;
  b.textContent = on ? "live" : "offline";
}

async function guard(promise) {
  try { await promise; } catch (err) {
    if (err instanceof Unauthorized) showLogin();
    else console.warn(err.message);
  }
}

async function refresh() {
  await Promise.all([loadNode(), loadMeters(), loadOutbox(), loadAlerts()]);
}

// -- session ------------------------------------------------------------------------------

async function start() {
  $("#login-view").hidden = true;
  $("#dashboard").hidden = false;
  $("#logout").hidden = false;
  connect();
  await guard(refresh());
  clearInterval(state.timer);
  state.timer = setInterval(() => guard(Promise.all([loadNode(), loadMeters()])), REFRESH_MS);
}

function showLogin() {
  state.session = null;
  clearInterval(state.timer);
  if (state.ws) { const ws = state.ws; state.ws = null; ws.close(); }
  setLive(false);
  $("#dashboard").hidden = true;
  $("#logout").hidden = true;
  $("#login-view").hidden = false;
  $("#token").focus();
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#login-error").textContent = "";
  const resp = await fetch("/api/v1/login", { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("#token").value.trim() }) });
  const body = await resp.json();
  if (!resp.ok) { $("#login-error").textContent = body.detail || `error ${resp.status}`; return; }
  $("#token").value = "";
  state.session = body;
  await start();
});

$("#logout").addEventListener("click", async () => {
  await fetch("/api/v1/logout", { method: "POST", credentials: "same-origin" });
  showLogin();
});

(async () => {
  const session = await api("/api/v1/session");
  if (session.authenticated) { state.session = session; await start(); } else showLogin();
})();
