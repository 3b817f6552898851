// The fleet page: GET /api/v1/fleet every 2 s, one table row per line. Text only
// (textContent, never innerHTML): every name comes from an edge node.
"use strict";

const body = document.querySelector("#fleet tbody");
const banner = document.getElementById("banner");

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function num(v, digits) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
}

function row(l) {
  const tr = document.createElement("tr");
  tr.className = l.online ? "online" : "offline";
  tr.dataset.site = l.site;
  tr.dataset.line = l.line;
  cell(tr, l.site);
  const name = cell(tr, "", "line");
  if (l.station_url) {  // drill-down: the line's own station (http/https only, checked)
    const a = document.createElement("a");
    a.href = l.station_url;
    a.textContent = l.line;
    a.rel = "noopener";
    name.appendChild(a);
  } else {
    name.textContent = l.line;
  }
  cell(tr, l.online ? "online" : "offline", "state");
  const mods = cell(tr, "", "modules");
  const up = l.modules.filter((m) => m.online).length;
  mods.append(`${up}/${l.modules.length} online`);
  const ul = document.createElement("ul");
  for (const m of l.modules) {
    const states = Object.entries(m.states).map(([s, v]) => `${s} ${v}`).join(", ");
    const li = document.createElement("li");
    li.className = m.online ? "online" : "offline";
    li.textContent = `${m.name}${m.online ? "" : " (offline)"}${states ? ": " + states : ""}`;
    ul.appendChild(li);
  }
  mods.appendChild(ul);
  cell(tr, l.active_run, "run");
  cell(tr, l.last_run);
  cell(tr, num(l.throughput_g_per_h, 2), "n throughput");
  cell(tr, num(l.yield_pct, 1), "n yield");
  cell(tr, num(l.uptime_pct, 1), "n uptime");
  cell(tr, num(l.alarms_per_h, 2), "n alarms");
  cell(tr, l.seen_at ? l.seen_at.replace("T", " ").slice(0, 19) : null);
  return tr;
}

async function refresh() {
  try {
    const r = await fetch("/api/v1/fleet", { cache: "no-store" });
    if (!r.ok) throw new Error(`the fleet database: HTTP ${r.status}`);
    const data = await r.json();
    body.replaceChildren(...data.lines.map(row));
    document.getElementById("window").textContent = data.window_h;
    const sites = new Set(data.lines.map((l) => l.site)).size;
    const online = data.lines.filter((l) => l.online).length;
    document.getElementById("summary").textContent =
      `${sites} site(s), ${data.lines.length} line(s), ${online} online`;
    banner.hidden = true;
  } catch (e) {
    banner.textContent = `not up to date: ${e.message}`;
    banner.hidden = false;
  }
}

refresh();
setInterval(refresh, 2000);
