// A partner's page (/partner/<id>): its funnel for the selected period and the
// previous one, its trend, two-sided value, integrations, campaigns, goals and
// credit explorer.  Loaded before app.js, whose functions it uses at run time.
"use strict";

const PARTNER = decodeURIComponent(location.pathname.slice("/partner/".length).replace(/\/$/, ""));
const PARTNER_SCOPE = `partner:${PARTNER}`;

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

window.partnerPage = {
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
    await renderSeries([PARTNER_SCOPE], "partner-chart");
  },
  init() {
    document.getElementById("page-title").textContent = `Partner: ${PARTNER}`;
    document.title = `PartnerPulse — ${PARTNER}`;
    document.getElementById("subject").addEventListener("change", () => renderCredits());
    loadSubjects(`/api/subjects?kind=opportunity&limit=200&partner=${encodeURIComponent(PARTNER)}`);
    renderCredits();
  },
};
