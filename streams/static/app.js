// PartnerPulse dashboard: table documents from /api/table for the selected
// period, series from /api/series, reloaded when the live stream reports changes.
//
// Every displayed number is an element with data-testid "<row key>|<column key>",
// data-scope, data-metric and data-value (the value of the table's JSON, in
// display units: money in the reporting currency), so a test can compare the
// page with the API.  Names from the data are only ever inserted with
// textContent, never as HTML.
"use strict";

const SERIES_METRICS = [
  ["nb.cw.attributed_arr", "NB closed-won attributed ARR"], ["nb.cw.influenced_arr", "NB closed-won influenced ARR"],
  ["nb.s2.attributed_arr", "NB S2 attributed ARR"], ["nb.s2.influenced_arr", "NB S2 influenced ARR"],
  ["ex.cw.attributed_arr", "EX closed-won attributed ARR"], ["ex.cw.influenced_arr", "EX closed-won influenced ARR"],
  ["nb.leads.influenced", "NB influenced leads"], ["nb.s2.influenced", "NB influenced S2s"],
];
const COLORS = ["#2f6fed", "#e8590c", "#2b8a3e", "#ae3ec9", "#f59f00", "#0c8599", "#c2255c", "#5c940d", "#495057"];
const EMPTY = {
  nbex: "No conversions yet. Send touch, lead_created and mql events (topic leads) and opportunity_created / opportunity_stage events (topic opportunities).",
  pipeline: "No partner pipeline yet. Send opportunity_created with source_partner or referral_partner, lead_created with source_partner, and referral_sent / referral_outcome (topic partners).",
  performance: "No partner performance yet. Send closed opportunities with partner touches, integration_installed / integration_used (topic integration-installs) and partner_feedback (topic partners).",
  campaigns: "No campaigns yet. Send touch events naming a campaign (topic leads); registry entries with spend and a goal and campaign_stats give cost, CTR and ROI (topic campaigns).",
  goals: "No goal in this period. Send a campaign registry entry with goal {metric, target} and period_start / period_end, or a campaign name with a period (topic campaigns).",
  cohorts: "No integration depth yet. Send integration_installed / integration_used (topic integration-installs) and account_snapshot with arr and health_score (topic accounts).",
  depth: "",
  dq: "",
};
const CAMPAIGN_ROWS = 20;

const state = {
  presets: [], period: null, cursor: null, source: null, reloadQueued: false, tables: {},
  currency: "USD", showAll: {}, asked: {},
};

// --- formatting -----------------------------------------------------------------

const count = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
let money = moneyFormat("USD");
function moneyFormat(currency) {
  return new Intl.NumberFormat("en-US", { style: "currency", currency, maximumFractionDigits: 0 });
}

function format(unit, v, row) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "string") return v;
  switch (unit) {
    case "money": return money.format(v);
    case "rate": return `${(v * 100).toFixed(1)} %`;
    case "pp": return `${v >= 0 ? "+" : ""}${(v * 100).toFixed(1)} pp`;
    case "days": return `${v.toFixed(1)} d`;
    case "days_delta": return `${v >= 0 ? "+" : ""}${v.toFixed(1)} d`;
    case "nps": return `${v >= 0 ? "+" : ""}${v.toFixed(0)}`;
    case "score": return v.toFixed(1);
    case "amount": return row && row.unit === "money" ? money.format(v) : count.format(v);
    default: return count.format(v);
  }
}

// --- DOM helpers ------------------------------------------------------------------

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function empty(text) { return el("div", { class: "empty", "data-testid": "empty" }, text); }

function label(scope) { return scope.includes(":") ? scope.slice(scope.indexOf(":") + 1) : scope; }

// A partner's name, linked to its page.
function scopeCell(key, text) {
  const td = el("td", { class: "name" });
  if (key.startsWith("partner:")) {
    td.append(el("a", { href: `/partner/${encodeURIComponent(label(key))}`, "data-testid": `link|${key}` }, text));
  } else { td.textContent = text; td.title = text; }
  return td;
}

function change(unit, now, before) {
  if (typeof now !== "number" || typeof before !== "number" || ["rate", "pp", "days", "days_delta", "nps", "score"].includes(unit)) return null;
  if (now === before) return null;
  const div = el("div", { class: `delta ${now > before ? "up" : "down"}`, title: `previous period: ${format(unit, before)}` });
  div.textContent = before === 0 ? "new" : `${now > before ? "▲" : "▼"} ${Math.abs(Math.round(((now - before) / before) * 100))} %`;
  return div;
}

const GOOD = { "goal.attainment": [1, 0.8], "goal.pace": [1, 0.8] };

function valueCell(table, row, column, scope, metric) {
  const v = row.values[column.key];
  const td = el("td", {
    class: "num", "data-testid": `${scope}|${metric}`, "data-scope": scope, "data-metric": metric,
    "data-value": v === null || v === undefined ? "" : String(v),
  });
  td.append(el("span", { class: "v" }, format(column.unit, v, row.values)));
  if (v === null && table.window) td.title = "no daily series for this metric, so no value for a period";
  const limits = GOOD[column.key];
  if (limits && typeof v === "number") td.classList.add(v >= limits[0] ? "good" : v >= limits[1] ? "warn" : "bad");
  if (row.previous) {
    const d = change(column.unit, v, row.previous[column.key]);
    if (d) td.append(d);
  }
  return td;
}

function isEmpty(table) {
  return !table.rows.length || table.rows.every((r) => Object.values(r.values).every((v) => v === 0 || v === ""));
}

// Windowed, a metric without a daily series has no value (null): say so once.
function unknownInWindow(table) {
  return table.window && table.rows.length && table.rows.every((r) => Object.values(r.values).every((v) => v === null || typeof v === "string"));
}

// A table document (/api/table) as an HTML table.  `options.cellId(row, column)`
// returns [scope, metric] for the cell's data attributes (default: row key, column key).
function renderTable(table, options = {}) {
  const cellId = options.cellId || ((row, column) => [row.key, column.key]);
  const grid = el("table", { "data-testid": `${table.name}-table` });
  const thead = el("thead");
  if (table.columns.some((c) => c.group)) {
    const groups = el("tr");
    groups.append(el("th"));
    let last = null;
    for (const c of table.columns) {
      if (last && last.textContent === c.group) { last.colSpan += 1; continue; }
      last = el("th", { class: "group" }, c.group); groups.append(last);
    }
    thead.append(groups);
  }
  const heads = el("tr");
  if (!options.groupBy) heads.append(el("th", {}, options.first ?? "partner"));
  for (const c of table.columns) heads.append(el("th", { class: c.unit === "text" ? "" : "num" }, c.label));
  thead.append(heads);
  grid.append(thead);
  const body = el("tbody");
  let group = null;
  const rows = shownRows(table, options);
  for (const row of rows) {
    if (options.groupBy && row.label !== group) {
      group = row.label;
      const tr = el("tr", { class: "grouprow" });
      const th = el("th", { colspan: String(table.columns.length) });
      th.append(scopeCell(row.label, row.label).firstChild || document.createTextNode(row.label));
      tr.append(th);
      body.append(tr);
    }
    const tr = el("tr", { "data-testid": `row|${row.key}`, ...(row.key === "all" ? { class: "total" } : {}) });
    if (!options.groupBy) tr.append(scopeCell(row.key, row.label));
    for (const c of table.columns) {
      if (c.unit === "text") { tr.append(el("td", {}, row.values[c.key] ?? "")); continue; }
      const [scope, metric] = cellId(row, c);
      tr.append(valueCell(table, row, c, scope, metric));
    }
    body.append(tr);
  }
  grid.append(body);
  return grid;
}

function shownRows(table, options) {
  const rows = options.filter ? table.rows.filter(options.filter) : table.rows;
  return options.limit ? rows.slice(0, options.limit) : rows;
}

function csvLink(href) {
  return el("a", { class: "csv", href, download: "", "data-testid": "csv" }, "Download CSV");
}

function windowQuery() {
  const p = state.period;
  return p && p.from ? `&from=${p.from}&to=${p.to}` : "";
}

// Reloads overlap (a live change, then a new period): each drawing of a box asks
// anew, and an answer draws only if no later ask for that box was made meanwhile.
function ask(id) {
  state.asked[id] = (state.asked[id] || 0) + 1;
  return state.asked[id];
}

// Load and draw one table section: the box `id` gets the table, a CSV link and notes.
async function showTable(name, id = name, options = {}) {
  const only = options.partner ? `&partner=${encodeURIComponent(options.partner)}` : "";
  const url = `/api/table?name=${name}${only}${windowQuery()}`;
  const mine = ask(id);
  const table = await getJson(url);
  if (!table || state.asked[id] !== mine) return null;
  state.tables[name] = table;
  if (table.window && table.previous_window) {
    const [w, p] = [table.window, table.previous_window];
    document.getElementById("window-note").textContent =
      `${w.from} to ${w.to} (UTC days), compared with ${p.from} to ${p.to}`;
  }
  state.currency = table.currency;
  money = moneyFormat(table.currency);
  const box = document.getElementById(id);
  if (unknownInWindow(table)) {
    box.replaceChildren(empty("These metrics have no daily series in Redis yet, so they have no value for a period. "
      + "Choose “All time”, or replay the events with a worker that writes daily series."));
    return table;
  }
  if (isEmpty(table) && EMPTY[name]) {
    box.replaceChildren(empty(EMPTY[name]));
    return table;
  }
  const parts = [renderTable(table, options)];
  const foot = el("div", { class: "foot" });
  foot.append(csvLink(`${url}&format=csv`));
  const shown = shownRows(table, options).length;
  if (shown < table.rows.length && options.more) {
    const more = el("button", { type: "button", class: "link", "data-testid": "show-all" }, `show all ${table.rows.length}`);
    more.addEventListener("click", () => { state.showAll[name] = true; reloadTables(); });
    foot.append(el("span", { class: "muted" }, ` ${shown} of ${table.rows.length} ${options.more} · `), more);
  }
  if (table.window && table.rows.some((r) => Object.values(r.values).some((v) => v === null))) {
    foot.append(el("span", { class: "muted" }, " – : no daily series for this metric, so it has no value for a period."));
  }
  parts.push(foot);
  box.replaceChildren(...parts);
  return table;
}

// --- period selector -------------------------------------------------------------------

async function loadPeriods() {
  const body = await getJson("/api/periods");
  state.presets = body ? body.presets : [{ id: "all", label: "All time", from: null, to: null }];
  const select = document.getElementById("period");
  select.replaceChildren(...state.presets.map((p) => el("option", { value: p.id }, p.label)),
    el("option", { value: "custom" }, "Custom…"));
  const wanted = new URLSearchParams(location.search);
  if (wanted.get("from") && wanted.get("to")) {
    select.value = "custom";
    state.period = { id: "custom", from: wanted.get("from"), to: wanted.get("to") };
    document.getElementById("custom-from").value = state.period.from;
    document.getElementById("custom-to").value = state.period.to;
    document.getElementById("custom").hidden = false;
  } else {
    const id = wanted.get("period") || "all";
    select.value = state.presets.some((p) => p.id === id) ? id : "all";
    state.period = state.presets.find((p) => p.id === select.value);
  }
  showWindow();
}

function showWindow() {
  const p = state.period;
  const note = document.getElementById("window-note");
  note.textContent = p && p.from ? `${p.from} to ${p.to} (UTC days), compared with the period before` : "running totals";
}

function choosePeriod(id) {
  document.getElementById("custom").hidden = id !== "custom";
  if (id === "custom") return;
  state.period = state.presets.find((p) => p.id === id);
  const url = new URL(location.href);
  url.search = id === "all" ? "" : `?period=${id}`;
  history.replaceState(null, "", url);
  showWindow();
  reloadTables();
}

function applyCustom() {
  const from = document.getElementById("custom-from").value;
  const to = document.getElementById("custom-to").value;
  if (!from || !to || to < from) return;
  state.period = { id: "custom", from, to };
  history.replaceState(null, "", `${location.pathname}?from=${from}&to=${to}`);
  showWindow();
  reloadTables();
}

// --- the series chart: real per-bucket series from Redis, one line per partner --------

let chart = null;

function defaultBucket() {
  const p = state.period;
  if (!p || !p.from) return "month";
  const days = (Date.parse(p.to) - Date.parse(p.from)) / 86400000 + 1;
  return days <= 45 ? "day" : days <= 200 ? "week" : "month";
}

async function renderSeries(partners) {
  const metric = document.getElementById("series-metric").value;
  const bucket = document.getElementById("series-bucket").value;
  const mine = ask("series-chart");
  const series = await Promise.all(partners.map((s) =>
    getJson(`/api/series?scope=${encodeURIComponent(s)}&metric=${encodeURIComponent(metric)}&bucket=${bucket}${windowQuery()}`)));
  if (state.asked["series-chart"] !== mine) return;
  const starts = [...new Set(series.flatMap((b) => (b ? b.points.map((p) => p[0]) : [])))].sort();
  const box = document.getElementById("series-chart");
  const isMoney = metric.endsWith("_arr");
  if (chart) { chart.destroy(); chart = null; }
  if (!starts.length || typeof uPlot === "undefined") {
    box.replaceChildren(empty(`No ${metric} by day yet for ${partners.length > 1 ? "any partner" : "this partner"} in this period.`
      + " Daily series come from conversions with a date: send opportunity_stage events reaching S2 or closed_won."));
    document.getElementById("series-note").textContent = "";
    return;
  }
  const xs = starts.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
  const ys = series.map((b) => {
    const m = new Map(b ? b.points : []);
    return starts.map((d) => ((m.get(d) || 0) / (isMoney ? 100 : 1)));
  });
  box.replaceChildren();
  const fmt = (v) => (isMoney ? money.format(v) : count.format(v));
  // The time axis spans the selected period (all time: the data, at least a month).
  const p = state.period;
  const day = 86400;
  const span = p && p.from
    ? [Date.parse(p.from + "T00:00:00Z") / 1000, Date.parse(p.to + "T00:00:00Z") / 1000 + day]
    : [xs[0], Math.max(xs[xs.length - 1], xs[0] + 30 * day)];
  chart = new uPlot({
    width: Math.max(300, box.clientWidth - 8), height: 280,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { x: { time: true, range: () => span } },
    series: [{ label: bucket }, ...partners.map((s, i) => ({
      label: label(s), stroke: COLORS[i % COLORS.length], width: 2, value: (u, v) => (v == null ? "–" : fmt(v)),
      points: { show: true, size: 6, fill: COLORS[i % COLORS.length] },
    }))],
    axes: [{}, { values: (u, vals) => vals.map(fmt), size: 90 }],
  }, [xs, ...ys], box);
  document.getElementById("series-note").textContent =
    `${metric} per ${bucket} (each point is the ${bucket} starting that day, UTC)${isMoney ? `, in ${state.currency}` : ""}.`;
}

// --- credits explorer ---------------------------------------------------------------

async function loadSubjects(url = "/api/subjects?kind=opportunity&limit=500") {
  const body = await getJson(url);
  const select = document.getElementById("subject");
  const current = select.value;
  const subjects = body ? body.subjects : [];
  select.replaceChildren(el("option", { value: "" }, subjects.length ? "choose…" : "no opportunity with credit yet"),
    ...subjects.map((s) => el("option", { value: s }, label(s))));
  select.value = current;
}

async function renderCredits() {
  const subject = document.getElementById("subject").value;
  const link = document.getElementById("credits-csv");
  link.hidden = !subject;
  if (!subject) { document.getElementById("credits").replaceChildren(empty("Choose an opportunity to see which touchpoints got its credit.")); return; }
  const url = `/api/credits?subject=${encodeURIComponent(subject)}`;
  link.href = `${url}&format=csv`;
  const body = await getJson(url);
  const box = document.getElementById("credits");
  if (!body || !body.touchpoints.length) { box.replaceChildren(empty("No credit for this opportunity.")); return; }
  const table = el("table", { "data-testid": "credits-table" });
  const head = el("tr");
  for (const h of ["touch", "date", "positions", "credit", "share", "attributed ARR", "partner", "campaign"]) head.append(el("th", {}, h));
  table.append(head);
  for (const tp of body.touchpoints) {
    const scope = (kind) => label(tp.scopes.find((s) => s.startsWith(kind + ":")) || "—");
    const row = el("tr");
    row.append(el("td", {}, tp.touch), el("td", {}, new Date(tp.ts / 1000).toISOString().slice(0, 10)),
      el("td", {}, tp.positions.map((p) => p.toUpperCase()).join(", ") || "middle"), el("td", { class: "num" }, tp.credit),
      el("td", { class: "num" }, (tp.share * 100).toFixed(2) + " %"),
      el("td", { class: "num", "data-testid": `credit|${subject}|${tp.touch}`, "data-value": String(tp.units) }, money.format(tp.units / 100)),
      el("td", {}, scope("partner")), el("td", {}, scope("campaign")));
    table.append(row);
  }
  box.replaceChildren(table);
}

// --- data flow -------------------------------------------------------------------------

async function getJson(url) {
  try {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    return r.ok ? await r.json() : null;
  } catch (e) {
    return null;
  }
}

function setStatus(text, cls) {
  const s = document.getElementById("live");
  s.textContent = text; s.className = `status ${cls}`;
}

// Reload every table of the page (and the chart): on a period change, and at most
// every 1.5 s while the live stream reports changes.
let page = null;

function reloadTables() { return page.reload(); }

function queueReload() {
  if (state.reloadQueued) return;
  state.reloadQueued = true;
  setTimeout(() => { state.reloadQueued = false; reloadTables(); }, 1500);
}

function follow() {
  if (state.source) state.source.close();
  const since = state.cursor ? `?since=${encodeURIComponent(state.cursor)}` : "";
  const source = new EventSource(`/api/events${since}`);
  state.source = source;
  source.onopen = () => setStatus("live", "live");
  source.onerror = () => setStatus("reconnecting…", "down");  // EventSource resumes with Last-Event-ID
  source.addEventListener("changes", (ev) => { state.cursor = ev.lastEventId; queueReload(); });
  source.addEventListener("reset", () => { source.close(); state.cursor = null; start(); });
}

async function start() {
  const status = await getJson("/api/status");
  if (!status) { setStatus("Redis unavailable — retrying", "down"); setTimeout(start, 3000); return; }
  state.cursor = status.cursor;
  await page.reload();
  follow();
}

// --- the overview ---------------------------------------------------------------------

const overview = {
  async reload() {
    const all = state.showAll;
    const partnerLevel = (row) => !row.key.startsWith("campaign:");
    const [nbex] = await Promise.all([
      showTable("nbex"),
      showTable("pipeline"),
      showTable("performance"),
      showTable("campaigns", "campaigns",
        { first: "campaign", limit: all.campaigns ? 0 : CAMPAIGN_ROWS, more: "campaigns, most influenced leads first" }),
      showTable("goals", "goals",
        { groupBy: true, filter: all.goals ? null : partnerLevel, more: "goals (partners shown; campaigns on demand)" }),
      showTable("cohorts", "cohorts", { first: "accounts" }),
      showTable("depth", "depth", { first: "" }),
      showTable("dq", "dq", { first: "counter", cellId: (row) => ["all", row.key] }),
    ]);
    if (!nbex) return;  // unreadable, or a newer reload draws instead
    const partners = nbex.rows.map((r) => r.key).filter((k) => k.startsWith("partner:"));
    await renderSeries(partners);
  },
  init() {
    document.getElementById("subject").addEventListener("change", () => renderCredits());
    loadSubjects();
    renderCredits();
    setInterval(() => loadSubjects(), 30000);
  },
};

function initControls() {
  const metricSelect = document.getElementById("series-metric");
  metricSelect.replaceChildren(...SERIES_METRICS.map(([m, t]) => el("option", { value: m }, t)));
  document.getElementById("series-bucket").value = defaultBucket();
  metricSelect.addEventListener("change", () => page.reload());
  document.getElementById("series-bucket").addEventListener("change", () => page.reload());
  document.getElementById("period").addEventListener("change", (ev) => {
    choosePeriod(ev.target.value);
    document.getElementById("series-bucket").value = defaultBucket();
  });
  document.getElementById("custom-apply").addEventListener("click", () => {
    applyCustom();
    document.getElementById("series-bucket").value = defaultBucket();
  });
  // Printing lays the page out anew (narrower, the partner page in two columns):
  // fit the chart's canvas to its box at once, before the page is paginated.
  const fitChart = () => {
    if (!chart) return;
    const box = chart.root.parentElement;
    chart.setSize({ width: Math.max(200, box.clientWidth - 8), height: 280 });
  };
  window.addEventListener("beforeprint", fitChart);
  window.matchMedia("print").addEventListener("change", fitChart);
  let resize = null;
  window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(() => page.reload(), 300); });
}

async function main() {
  page = window.partnerPage || overview;
  await loadPeriods();
  initControls();
  page.init();
  await start();
}

main();
