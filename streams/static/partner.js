// A partner's page (/partner/<id>): its funnel for the selected period and the
// previous one, its trend, two-sided value, integrations, campaigns, goals and
// credit explorer.  The server sends the overview's page for every path; on a
// partner's path this script swaps the overview for the partner template before
// app.js (loaded after it, whose functions it uses at run time) starts.
"use strict";

const PARTNER_PATH = location.pathname.startsWith("/partner/");
const PARTNER = PARTNER_PATH ? decodeURIComponent(location.pathname.slice("/partner/".length).replace(/\/$/, "")) : null;
const PARTNER_SCOPE = `partner:${PARTNER}`;

// The partner template has slots for the overview's chart and credit sections,
// which move over (one copy of their markup); the rest of the overview goes.
if (PARTNER_PATH) {
  const partner = document.getElementById("partner-page").content.cloneNode(true);
  for (const slot of partner.querySelectorAll("[data-slot]")) {
    const part = document.querySelector(`[data-part="${slot.dataset.slot}"]`);
    const title = part.querySelector("[data-partner-title]");
    if (title) title.textContent = title.dataset.partnerTitle;
    slot.replaceWith(part);
  }
  document.getElementById("overview").replaceWith(partner);
}

// The NB/EX row of the partner, one metric per line: this period, the previous one, the change.
function renderFunnel(table) {
  const box = document.getElementById("funnel");
  const row = table && table.rows.find((r) => r.key === PARTNER_SCOPE);
  if (!row) { box.replaceChildren(empty(`No data for partner “${PARTNER}” yet. ${EMPTY.nbex}`)); return; }
  const grid = el("table", { "data-testid": "funnel-table" });
  const head = el("tr");
  head.append(el("th", {}, "metric"), el("th", { class: "num" }, table.window ? "selected period" : "all time"));
  if (table.window) head.append(el("th", { class: "num" }, "previous period"), el("th", { class: "num" }, "change"));
  grid.append(head);
  for (const c of table.columns) {
    const tr = el("tr");
    tr.append(el("td", {}, `${c.group} · ${c.label}`), valueCell({ window: table.window }, { values: row.values }, c, row.key, c.key));
    if (table.window) {
      const before = row.previous ? row.previous[c.key] : null;
      tr.append(valueCell({ window: table.window }, { values: { [c.key]: before } }, c, `previous|${row.key}`, c.key));
      const d = change(c.unit, row.values[c.key], before);
      const td = el("td", { class: "num" });
      if (d) td.append(d);
      tr.append(td);
    }
    grid.append(tr);
  }
  const foot = el("div", { class: "foot" });
  foot.append(csvLink(`/api/table?name=nbex&partner=${encodeURIComponent(PARTNER)}${windowQuery()}&format=csv`));
  box.replaceChildren(grid, foot);
}

const partnerPage = {
  async reload() {
    const only = { partner: PARTNER };
    const [nbex] = await Promise.all([
      getJson(`/api/table?name=nbex&partner=${encodeURIComponent(PARTNER)}${windowQuery()}`),
      showTable("pipeline", "pipeline", only),
      showTable("performance", "performance", only),
      showTable("campaigns", "campaigns", { ...only, first: "campaign", limit: 10 }),
      showTable("goals", "goals", { ...only, groupBy: true }),
    ]);
    if (nbex) money = moneyFormat(nbex.currency);
    renderFunnel(nbex);
    await renderSeries([PARTNER_SCOPE]);
  },
  init() {
    document.getElementById("page-title").textContent = `Partner: ${PARTNER}`;
    document.title = `PartnerPulse — ${PARTNER}`;
    document.getElementById("subject").addEventListener("change", () => renderCredits());
    loadSubjects(`/api/subjects?kind=opportunity&limit=200&partner=${encodeURIComponent(PARTNER)}`);
    renderCredits();
  },
};

if (PARTNER_PATH) window.partnerPage = partnerPage;
