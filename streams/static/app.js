// PartnerPulse dashboard: a snapshot from /api/metrics, then live changes over SSE.
//
// Every displayed number is an element with data-testid "<scope>|<metric>",
// data-scope, data-metric and data-value (the raw integer Redis holds), so a
// test can compare the page with Redis.  Names from the data are only ever
// inserted with textContent, never as HTML.
"use strict";

const NBEX = [
  ["New Business", "nb", [
    ["nb.leads.influenced", "Leads"], ["nb.mqls.influenced", "MQLs"],
    ["nb.s2.influenced", "S2s"], ["nb.s2.influenced_arr", "S2 Infl. ARR"],
    ["nb.s2.attributed_arr", "S2 Attr. ARR"], ["nb.cw.influenced", "Closed-Won"],
    ["nb.cw.influenced_arr", "CW Infl. ARR"], ["nb.cw.attributed_arr", "CW Attr. ARR"],
  ]],
  ["Expansion", "ex", [
    ["ex.s2.influenced", "S2s"], ["ex.s2.influenced_arr", "S2 Infl. ARR"],
    ["ex.s2.attributed_arr", "S2 Attr. ARR"], ["ex.cw.influenced", "Closed-Won"],
    ["ex.cw.influenced_arr", "CW Infl. ARR"], ["ex.cw.attributed_arr", "CW Attr. ARR"],
  ]],
];
const SERIES_METRICS = [
  "nb.cw.attributed_arr", "nb.cw.influenced_arr", "nb.s2.attributed_arr",
  "nb.s2.influenced_arr", "ex.cw.attributed_arr", "ex.cw.influenced_arr",
];
const MICRO = { "nb.leads.attributed": 1e6 };  // metrics held in millionths
const FUNNEL = [
  // [label, candidate metric names: the first present is shown]
  ["Registrations", ["campaign.registrations", "campaigns.registrations"]],
  ["Attendees", ["campaign.attendees", "campaigns.attendees"]],
  ["Influenced leads", ["nb.leads.influenced"]],
  ["S2", ["nb.s2.influenced"]],
  ["Won", ["nb.cw.influenced"]],
];
const CAMPAIGN_ROWS = 20;
const COLORS = ["#2f6fed", "#e8590c", "#2b8a3e", "#ae3ec9", "#f59f00", "#0c8599", "#c2255c", "#5c940d", "#495057"];

const state = { metrics: {}, derived: {}, cursor: "0-0", source: null, renderQueued: false, history: {} };
const CAMPAIGN_RATES = [
  ["CTR", "campaigns.ctr"], ["attendance", "campaigns.attendance_rate"],
  ["conversion", "campaigns.conversion_rate"], ["cost / lead", "campaigns.cost_per_influenced_lead"],
  ["ROI", "campaigns.roi"],
];

// --- formatting -------------------------------------------------------------

const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 0 });
const count = new Intl.NumberFormat("en-US");

function display(metric, value) {
  if (typeof value !== "number") return String(value);
  if (metric.endsWith("_arr") || metric.endsWith(".spend")) return money.format(value / 100);
  if (MICRO[metric]) return (value / MICRO[metric]).toFixed(2);
  return count.format(value);
}

function value(scope, metric) {
  const m = state.metrics[scope];
  return m && metric in m ? m[metric] : 0;  // the sink deletes fields that reach 0
}

// --- DOM helpers --------------------------------------------------------------

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function metricCell(scope, metric) {
  const v = value(scope, metric);
  return el("td", {
    class: "num", "data-testid": `${scope}|${metric}`, "data-scope": scope,
    "data-metric": metric, "data-value": String(v),
  }, display(metric, v));
}

// A derived rate (/api/derived, computed by the server as `report` does): never summed here.
function derivedCell(scope, name) {
  const v = (state.derived[scope] || {})[name];
  let text = "–";
  if (typeof v === "number") {
    text = name.endsWith("cost_per_influenced_lead") ? money.format(v / 100) : `${(v * 100).toFixed(1)} %`;
  }
  return el("td", {
    class: "num", "data-testid": `${scope}|${name}`, "data-scope": scope, "data-derived": name,
    "data-value": v === undefined || v === null ? "" : String(v),
  }, text);
}

async function loadDerived() {
  const body = await getJson("/api/derived");
  if (body) { state.derived = body.derived; queueRender(); }
}

function empty(text) { return el("div", { class: "empty" }, text); }

function replace(id, node) {
  const box = document.getElementById(id);
  box.replaceChildren(node);
}

function scopesOf(kind) {
  return Object.keys(state.metrics).filter((s) => s.startsWith(kind + ":")).sort();
}

function label(scope) { return scope.includes(":") ? scope.slice(scope.indexOf(":") + 1) : scope; }

// A scope x metric table of every metric whose name matches `test`, for the
// sections whose metric names are still being defined (integrations, goals).
function pivot(scopes, test, emptyText) {
  const metrics = [...new Set(scopes.flatMap((s) => Object.keys(state.metrics[s] || {}).filter(test)))].sort();
  if (!metrics.length) return empty(emptyText);
  const table = el("table");
  const head = el("tr");
  head.append(el("th", {}, "scope"), ...metrics.map((m) => el("th", { class: "num" }, m)));
  table.append(head);
  for (const scope of scopes) {
    if (!metrics.some((m) => value(scope, m) !== 0)) continue;
    const row = el("tr", scope === "all" ? { class: "total" } : {});
    row.append(el("td", {}, scope), ...metrics.map((m) => metricCell(scope, m)));
    table.append(row);
  }
  return table;
}

// --- sections -------------------------------------------------------------------

function renderNbEx() {
  const scopes = ["all", ...scopesOf("partner")];
  const table = el("table", { "data-testid": "nbex-table" });
  const groups = el("tr");
  groups.append(el("th"));
  const heads = el("tr");
  heads.append(el("th", {}, "partner"));
  for (const [title, , cols] of NBEX) {
    groups.append(el("th", { class: "group", colspan: String(cols.length) }, title));
    for (const [, name] of cols) heads.append(el("th", { class: "num" }, name));
  }
  table.append(groups, heads);
  for (const scope of scopes) {
    const row = el("tr", { "data-testid": `row|${scope}`, ...(scope === "all" ? { class: "total" } : {}) });
    row.append(el("td", {}, label(scope)));
    for (const [, , cols] of NBEX) for (const [metric] of cols) row.append(metricCell(scope, metric));
    table.append(row);
  }
  replace("nbex", state.metrics.all || scopes.length > 1 ? table : empty("no data yet"));
}

function renderDq() {
  const scope = "all";
  const names = ["dq.dead_letters", "dq.campaign_name_invalid", "dq.duplicates_ignored", "dq.late_events"];
  const extra = Object.keys(state.metrics.all || {}).filter((m) => m.startsWith("dq.") && !names.includes(m)).sort();
  const table = el("table", { "data-testid": "dq-table" });
  for (const metric of [...names, ...extra]) {
    const row = el("tr");
    row.append(el("td", {}, metric), metricCell(scope, metric));
    table.append(row);
  }
  replace("dq", table);
}

function renderCampaigns() {
  const scopes = scopesOf("campaign");
  if (!scopes.length) { replace("campaigns", empty("no campaign data yet")); return; }
  const has = (m) => scopes.some((s) => m in (state.metrics[s] || {}));
  const stages = FUNNEL.map(([title, names]) => [title, names.find(has)]);
  const shown = stages.filter(([, m]) => m);
  const missing = stages.filter(([, m]) => !m).map(([t]) => t.toLowerCase());
  const rates = [...new Set(scopes.flatMap((s) => Object.keys(state.metrics[s] || {})
    .filter((m) => /^campaigns?\./.test(m) && !shown.some(([, p]) => p === m))))].sort();
  const table = el("table", { "data-testid": "campaign-table" });
  const head = el("tr");
  head.append(el("th", {}, "campaign"), ...shown.map(([t]) => el("th", { class: "num" }, t)),
    ...rates.map((m) => el("th", { class: "num" }, m.replace(/^campaigns?\./, ""))),
    ...CAMPAIGN_RATES.map(([t]) => el("th", { class: "num" }, t)));
  table.append(head);
  const top = scopes.map((s) => [s, value(s, "nb.leads.influenced")]).sort((a, b) => b[1] - a[1]).slice(0, CAMPAIGN_ROWS);
  for (const [scope] of top) {
    const row = el("tr");
    row.append(el("td", {}, label(scope)), ...shown.map(([, m]) => metricCell(scope, m)),
      ...rates.map((m) => metricCell(scope, m)), ...CAMPAIGN_RATES.map(([, d]) => derivedCell(scope, d)));
    table.append(row);
  }
  const notes = [`${top.length} of ${scopes.length} campaigns, by influenced leads.`];
  if (missing.length) notes.push(`No data yet for ${missing.join(", ")}.`);
  const box = el("div");
  box.append(table, el("p", { class: "muted", "data-testid": "campaign-note" }, notes.join(" ")));
  replace("campaigns", box);
}

function renderGeneric() {
  const all = ["all", ...scopesOf("partner")];
  replace("integrations", pivot(all, (m) => /^integrations?\./.test(m) || /^(accounts|cohort)\./.test(m),
    "no integration data yet"));
  replace("goals", goals([...all, ...scopesOf("campaign")]));
}

// Goal attainment and pace per scope and goal metric, from /api/derived.
function goals(scopes) {
  const rows = scopes.flatMap((s) => Object.keys(state.derived[s] || {})
    .filter((d) => d.startsWith("goal.attainment:")).map((d) => [s, d.slice("goal.attainment:".length)]));
  if (!rows.length) return empty("no goals yet (campaign registry entries with a goal)");
  const table = el("table", { "data-testid": "goals-table" });
  const head = el("tr");
  head.append(el("th", {}, "scope"), el("th", {}, "goal metric"), el("th", { class: "num" }, "target"),
    el("th", { class: "num" }, "attainment"), el("th", { class: "num" }, "pace"));
  table.append(head);
  for (const [scope, metric] of rows) {
    const row = el("tr");
    row.append(el("td", {}, scope), el("td", {}, metric), metricCell(scope, `goal.target:${metric}`),
      derivedCell(scope, `goal.attainment:${metric}`), derivedCell(scope, `goal.pace:${metric}`));
    table.append(row);
  }
  return table;
}

async function renderLeaderboard() {
  const metric = document.getElementById("series-metric").value || SERIES_METRICS[0];
  const body = await getJson(`/api/leaderboard?metric=${encodeURIComponent(metric)}&limit=10`);
  const fromRedis = body && body.entries.length;
  const entries = fromRedis ? body.entries : scopesOf("partner")
    .map((s) => ({ member: s, value: value(s, metric) })).filter((e) => e.value).sort((a, b) => b.value - a.value).slice(0, 10);
  if (!entries.length) { replace("leaderboard", empty("no data yet")); return; }
  const table = el("table", { "data-testid": "leaderboard-table" });
  table.append(el("caption", { class: "muted" }, `${metric} (${fromRedis ? "leaderboard" : "live metrics"})`));
  for (const e of entries) {
    const row = el("tr");
    row.append(el("td", {}, label(e.member)), el("td", { class: "num", "data-testid": `lb|${e.member}|${metric}`,
      "data-value": String(e.value) }, display(metric, e.value)));
    table.append(row);
  }
  replace("leaderboard", table);
}

// --- the series chart: daily series when the sink writes them, else this session's samples

let chart = null;

async function renderSeries() {
  const metric = document.getElementById("series-metric").value;
  const partners = scopesOf("partner");
  const series = await Promise.all(partners.map((s) => getJson(`/api/series?scope=${encodeURIComponent(s)}&metric=${encodeURIComponent(metric)}`)));
  const daily = series.some((b) => b && b.points.length);
  let xs; let ys;
  if (daily) {
    const days = [...new Set(series.flatMap((b) => (b ? b.points.map((p) => p[0]) : [])))].sort();
    xs = days.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
    ys = series.map((b) => { const m = new Map(b ? b.points : []); return days.map((d) => (m.has(d) ? m.get(d) / 100 : null)); });
    document.getElementById("series-note").textContent = "Daily series from Redis.";
  } else {
    const h = state.history[metric] || [];
    xs = h.map((p) => p.t);
    ys = partners.map((s) => h.map((p) => (p.v[s] || 0) / 100));
    document.getElementById("series-note").textContent =
      "No daily series in Redis yet: showing running totals sampled in this browser session.";
  }
  const box = document.getElementById("series-chart");
  if (chart) { chart.destroy(); chart = null; }
  if (!xs.length || typeof uPlot === "undefined") { box.replaceChildren(empty("no data yet")); return; }
  box.replaceChildren();
  chart = new uPlot({
    width: Math.max(400, box.clientWidth || 900), height: 280,
    series: [{}, ...partners.map((s, i) => ({ label: label(s), stroke: COLORS[i % COLORS.length], width: 2 }))],
    axes: [{}, { values: (u, v) => v.map((x) => money.format(x)) , size: 80 }],
  }, [xs, ...ys], box);
}

function sample() {
  const t = Date.now() / 1000;
  for (const metric of SERIES_METRICS) {
    const v = {};
    for (const s of scopesOf("partner")) v[s] = value(s, metric);
    (state.history[metric] ||= []).push({ t, v });
    if (state.history[metric].length > 720) state.history[metric].shift();
  }
}

// --- credits explorer ------------------------------------------------------------

async function loadSubjects() {
  const body = await getJson("/api/subjects?kind=opportunity&limit=200");
  const select = document.getElementById("subject");
  const current = select.value;
  select.replaceChildren(el("option", { value: "" }, "choose…"),
    ...(body ? body.subjects : []).map((s) => el("option", { value: s }, label(s))));
  select.value = current;
}

async function renderCredits() {
  const subject = document.getElementById("subject").value;
  if (!subject) { replace("credits", empty("choose an opportunity")); return; }
  const body = await getJson(`/api/credits?subject=${encodeURIComponent(subject)}`);
  if (!body || !body.touchpoints.length) { replace("credits", empty("no credit for this opportunity")); return; }
  const table = el("table", { "data-testid": "credits-table" });
  const head = el("tr");
  for (const h of ["touch", "when", "positions", "credit", "share", "cents", "partner", "campaign"]) head.append(el("th", {}, h));
  table.append(head);
  for (const tp of body.touchpoints) {
    const scope = (kind) => label(tp.scopes.find((s) => s.startsWith(kind + ":")) || "—");
    const row = el("tr");
    row.append(el("td", {}, tp.touch), el("td", {}, new Date(tp.ts / 1000).toISOString().slice(0, 10)),
      el("td", {}, tp.positions.join(", ")), el("td", { class: "num" }, tp.credit),
      el("td", { class: "num" }, (tp.share * 100).toFixed(2) + " %"),
      el("td", { class: "num", "data-testid": `credit|${subject}|${tp.touch}`, "data-value": String(tp.units) }, money.format(tp.units / 100)),
      el("td", {}, scope("partner")), el("td", {}, scope("campaign")));
    table.append(row);
  }
  replace("credits", table);
}

// --- data flow ---------------------------------------------------------------------

async function getJson(url) {
  try {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    return r.ok ? await r.json() : null;
  } catch (e) {
    return null;
  }
}

function renderAll() {
  state.renderQueued = false;
  renderNbEx(); renderDq(); renderCampaigns(); renderGeneric();
  document.getElementById("cursor").textContent = `stream ${state.cursor}`;
}

function queueRender() {  // at most ~3 renders a second, however fast changes come
  if (state.renderQueued) return;
  state.renderQueued = true;
  setTimeout(renderAll, 300);
}

function setStatus(text, cls) {
  const s = document.getElementById("live");
  s.textContent = text; s.className = `status ${cls}`;
}

async function loadSnapshot() {
  const body = await getJson("/api/metrics");
  if (!body) { setStatus("Redis unavailable — retrying", "down"); setTimeout(start, 3000); return false; }
  state.metrics = body.metrics;
  state.cursor = body.cursor;
  sample();
  renderAll();
  return true;
}

function follow() {
  if (state.source) state.source.close();
  const source = new EventSource(`/api/events?since=${encodeURIComponent(state.cursor)}`);
  state.source = source;
  source.onopen = () => setStatus("live", "live");
  source.onerror = () => setStatus("reconnecting…", "down");  // EventSource resumes with Last-Event-ID
  source.addEventListener("changes", (ev) => {
    for (const c of JSON.parse(ev.data)) {
      const m = (state.metrics[c.scope] ||= {});
      if (c.value === 0) delete m[c.metric]; else m[c.metric] = c.value;
    }
    state.cursor = ev.lastEventId;
    queueRender();
  });
  source.addEventListener("reset", () => { source.close(); start(); });  // missed trimmed entries
}

async function start() {
  if (await loadSnapshot()) follow();
  await Promise.all([renderSeries(), renderLeaderboard(), loadSubjects(), loadDerived()]);
}

document.getElementById("series-metric").replaceChildren(...SERIES_METRICS.map((m) => el("option", { value: m }, m)));
document.getElementById("series-metric").addEventListener("change", () => { renderSeries(); renderLeaderboard(); });
document.getElementById("subject").addEventListener("change", renderCredits);
setInterval(() => { sample(); renderSeries(); renderLeaderboard(); loadDerived(); }, 5000);
setInterval(loadSubjects, 30000);
start();
