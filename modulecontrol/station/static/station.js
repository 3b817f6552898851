// The operator station: a client of the control service's API and event stream.
// Plain browser JavaScript, no library and no build step: it ships inside the Python package.
// Every value shown comes from /api/v1 with the user's token; every command goes there too,
// so the service checks the role and writes the audit trail. The page never trusts itself:
// a control it disables is refused by the service as well.
"use strict";
(() => {
  const S = {
    token: sessionStorage.getItem("mc.token") || "", user: "", role: "", scopes: [],
    topo: null, plant: null, runs: [], seq: 0, epoch: "", ws: null,
    values: {}, services: {}, cmdEn: {}, faulted: {}, modes: {},
    events: [], alarms: new Map(), divert: null, steady: {},
    clockStart: 0, clockAt: { t: 0, wall: 0, speed: 1 },
    view: "", faceplate: "", dirty: new Set(), frame: 0,
    trend: { tags: [], span: 3600, end: null, data: {}, units: {} },
    lag: [], stats: { events: 0 },
  };
  const CONTROL = "write:run:control", QUEUE = "write:queue", APPROVE = "sign:approve";
  const COMMANDS = ["Start", "Stop", "Hold", "Unhold", "Pause", "Resume", "Complete", "Abort",
                    "Restart", "Reset"];
  const ABNORMAL = new Set(["Held", "Holding", "Aborted", "Aborting", "Stopping", "Paused"]);
  const ALARM_KINDS = new Set(["alarm_raised", "alarm_cleared", "alarm_acked", "alarm_state",
                               "interlock_tripped", "interlock_cleared"]);
  // ISA-18.2 life-cycle states: a shape and a word each, so no state is told by colour alone
  const SHAPES = { "unacknowledged": "▲", "acknowledged": "■", "returned unacknowledged": "△",
                   "shelved": "◇", "suppressed": "○", "out of service": "✕", "normal": "·" };
  const UNACKED = new Set(["unacknowledged", "returned unacknowledged"]);
  window.__station = S;  // for the browser tests and the benchmark: read-only inspection

  // ------------------------------------------------------------------ DOM helpers
  const $ = (sel, root = document) => root.querySelector(sel);
  function el(tag, attrs = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === false || v === null || v === undefined) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  const SVGNS = "http://www.w3.org/2000/svg";
  function sv(tag, attrs = {}, ...kids) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") e.textContent = v; else e.setAttribute(k, String(v));
    }
    for (const k of kids) if (k) e.append(k);
    return e;
  }
  const can = (scope) => S.scopes.includes(scope);
  function fmt(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "number") {
      const a = Math.abs(v);
      return a !== 0 && (a >= 1e5 || a < 1e-3) ? v.toExponential(3) : String(+v.toPrecision(4));
    }
    return String(v);
  }
  function dur(s) {
    if (s === null || s === undefined || !isFinite(s)) return "—";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h ? `${h} h ${m} min` : m ? `${m} min ${r} s` : `${r} s`;
  }
  const lineNow = () => S.clockAt.t + (performance.now() / 1000 - S.clockAt.wall) * S.clockAt.speed;
  const toEpoch = (t) => S.clockStart + t;

  // ------------------------------------------------------------------ the API
  class ApiError extends Error {
    constructor(status, detail, problems) { super(detail); this.status = status; this.problems = problems || []; }
  }
  async function api(path, opts = {}) {
    const headers = { Authorization: `Bearer ${S.token}` };
    let body;
    if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(opts.json); }
    const res = await fetch(`/api/v1${path}`, { method: opts.method || "GET", headers, body });
    const type = res.headers.get("content-type") || "";
    const data = type.includes("json") ? await res.json() : await res.text();
    if (res.status === 401 && path !== "/token") { logout("your session ended: log in again"); }
    if (!res.ok) throw new ApiError(res.status, data.detail || res.statusText, data.problems);
    return data;
  }
  function say(where, err) {
    const text = err instanceof ApiError ? [err.message, ...err.problems].join("\n") : String(err);
    where.textContent = text;
  }

  // ------------------------------------------------------------------ login
  $("#login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      const r = await fetch("/api/v1/token", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username: f.get("username"), password: f.get("password") }) });
      const d = await r.json();
      if (!r.ok) throw new ApiError(r.status, d.detail || "login failed");
      S.token = d.access_token; sessionStorage.setItem("mc.token", S.token);
      $("#login-error").textContent = "";
      e.target.reset();
      await start(d);
    } catch (err) { say($("#login-error"), err); }
  });
  $("#logout").addEventListener("click", () => logout(""));
  function logout(why) {
    S.token = ""; sessionStorage.removeItem("mc.token");
    if (S.ws) { S.ws.onclose = null; S.ws.close(); S.ws = null; }
    document.querySelectorAll(".view").forEach((v) => { v.hidden = true; v.replaceChildren(); });
    $("#faceplate").hidden = true; $("nav").hidden = true; $("#logout").hidden = true;
    $("#who").textContent = ""; $("#login").hidden = false; $("#login-error").textContent = why;
  }

  async function start(who) {
    if (who) { S.user = who.user; S.role = who.role; S.scopes = who.scopes; }
    else {  // a token kept across a reload: who it is comes back with the first refusal or not
      const saved = JSON.parse(sessionStorage.getItem("mc.who") || "{}");
      Object.assign(S, { user: saved.user || "", role: saved.role || "", scopes: saved.scopes || [] });
    }
    sessionStorage.setItem("mc.who", JSON.stringify({ user: S.user, role: S.role, scopes: S.scopes }));
    await snapshot();
    $("#login").hidden = true; $("nav").hidden = false; $("#logout").hidden = false;
    $("#who").textContent = `${S.user} (${S.role})`;
    document.body.dataset.role = S.role;
    connect();
    route();
  }

  // ------------------------------------------------------------------ snapshot and stream
  async function snapshot() {
    const [topo, plant, runs, evs, board] = await Promise.all([
      S.topo ? Promise.resolve(S.topo) : api("/plant/topology"), api("/plant"), api("/runs"),
      api("/events?since=0&limit=10000"), api("/alarms")]);
    S.topo = topo; S.runs = runs;
    // what production mode may run: read beside the snapshot, never holding it up
    api("/recipes").then((d) => { S.recipes = d; }).catch(() => {});
    applyPlant(plant);
    S.seq = plant.events_head; S.epoch = plant.stream;
    S.events = [];
    if (!evs.resync) for (const ev of evs.events) if (ev.kind !== "value_changed") remember(ev);
    applyBoard(board);
    $("#plant-name").textContent = `${plant.plant}${plant.simulated ? " (simulated)" : ""}`;
  }
  function applyPlant(plant) {
    S.plant = plant;
    S.clockStart = plant.clock_start;
    S.clockAt = { t: plant.clock_now, wall: performance.now() / 1000, speed: plant.speed || 1 };
    const now = Date.now() / 1000;
    for (const m of plant.modules) {
      S.faulted[m.tag] = m.faulted ? (m.fault || "fault") : "";
      for (const [svc, st] of Object.entries(m.services)) S.services[`${m.tag}.${svc}`] = st;
      S.cmdEn[m.tag] = m.command_en || {};
      S.modes[m.tag] = m.modes || {};
      for (const [name, v] of Object.entries(m.values)) {
        S.values[`${m.tag}.${name}`] = { value: v.value, unit: v.unit, quality: v.quality,
                                         at: v.t === null ? null : Math.min(now, v.t) };
      }
      S.dirty.add(m.tag);
    }
  }
  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/api/v1/stream?since=${S.seq}` +
                             `&token=${encodeURIComponent(S.token)}`);
    S.ws = ws;
    ws.onopen = () => { $("#link").textContent = "live"; $("#link").className = ""; };
    ws.onmessage = (m) => {
      const ev = JSON.parse(m.data);
      if (ev.type === "resync") { S.seq = ev.seq; snapshot().then(render); return; }
      S.seq = ev.seq;
      handle(ev);
    };
    ws.onclose = () => {
      $("#link").textContent = "connection lost: reconnecting"; $("#link").className = "abnormal";
      if (S.token) setTimeout(() => { if (S.token) connect(); }, 1000);
    };
  }

  let plantTimer = 0, runsTimer = 0, alarmsTimer = 0;
  function later(which, ms) {  // debounced re-reads of the snapshot parts an event changes
    if (which === "alarms" && !alarmsTimer) alarmsTimer = setTimeout(async () => {
      alarmsTimer = 0; applyBoard(await api("/alarms")); renderBanner(); if (S.view === "alarms") render(); }, ms);
    if (which === "plant" && !plantTimer) plantTimer = setTimeout(async () => {
      plantTimer = 0; applyPlant(await api("/plant")); schedule(); }, ms);
    if (which === "runs" && !runsTimer) runsTimer = setTimeout(async () => {
      runsTimer = 0; S.runs = await api("/runs");
      // the run panel only: a parameter being typed into the queue form stays
      if (S.view === "run") updateRun(); else if (S.view === "records") render(); }, ms);
  }

  function handle(ev) {
    S.stats.events++;
    if (ev.kind === "value_changed") {
      const d = ev.data;
      S.values[ev.source] = { value: d.value, unit: d.unit, quality: d.quality, at: Date.now() / 1000 };
      S.dirty.add(d.module);
      S.lag.push({ seq: ev.seq, received: performance.now() });
      const tr = S.trend.data[ev.source];
      if (tr) tr.push([toEpoch(ev.t), d.value]);
      schedule();
      return;
    }
    remember(ev);
    if (ev.kind === "service_state") {
      S.services[ev.source] = ev.data.new; S.dirty.add(ev.data.module); later("plant", 200);
    }
    if (ev.kind === "module_fault" || ev.kind === "module_recovered" || ev.kind === "mode_changed") later("plant", 100);
    if (ev.run !== null || ev.kind.startsWith("run_")) later("runs", 150);
    if (ALARM_KINDS.has(ev.kind)) { renderBanner(); if (S.view === "alarms") render(); }
    if (ev.kind === "alarm_state") later("alarms", 150);
    schedule();
  }
  function remember(ev) {
    S.events.push(ev);
    if (S.events.length > 2000) S.events.splice(0, S.events.length - 2000);
    if (ev.kind === "divert") S.divert = !!ev.data.to_product;
    if (ev.kind === "steady_state") S.steady[ev.source] = ev.data.steady !== false;
    if (ev.kind === "run_started") { S.divert = null; S.steady = {}; }
    if (ALARM_KINDS.has(ev.kind)) foldAlarm(ev);
  }

  // ------------------------------------------------------------------ alarms, one source
  // The alarm board of the service (GET /alarms) is the one source of alarm state; each
  // alarm_state event of the stream moves the entry at once, and a debounced re-read brings
  // what an event does not carry (what may be done next).
  function applyBoard(board) {
    S.alarms.clear();
    S.alarmClock = { start: board.clock_start };
    for (const a of board.alarms) S.alarms.set(a.name, a);
  }
  function foldAlarm(ev) {
    if (ev.kind !== "alarm_state") return;
    const a = S.alarms.get(ev.source) || { name: ev.source, kind: "alarm", message: ev.message, possible: [] };
    Object.assign(a, { state: ev.data.state, active: ev.data.active, priority: ev.data.priority,
      first_out: ev.data.first_out, chattering: ev.data.chattering, since: ev.t,
      shelved_until: ev.data.until, reason: ev.data.reason || null });
    S.alarms.set(a.name, a);
  }
  const unacked = () => [...S.alarms.values()].filter((a) => UNACKED.has(a.state));
  function renderBanner() {
    const high = unacked().filter((a) => a.priority === "high" || a.priority === "urgent");
    const b = $("#banner");
    b.hidden = high.length === 0;
    b.textContent = high.length ? `▲ ${high.length} unacknowledged high-priority alarm(s): ` +
      high.map((a) => `${a.name} (${a.message})`).join("; ") : "";
  }
  async function alarmCommand(a, action, json) {
    const got = await api(`/alarms/${encodeURIComponent(a.name)}/${action}`, { method: "POST", json: json || {} });
    S.alarms.set(got.name, got); renderBanner(); render();
  }
  const ack = (a) => alarmCommand(a, "ack");
  function shelveDialog(a, msg) {
    const err = el("p", { class: "error", role: "alert" });
    const dlg = el("dialog", { id: "shelve-dialog", "aria-label": `Shelve ${a.name}` });
    const form = el("form", { method: "dialog", onsubmit: async (e) => {
      e.preventDefault();
      const f = new FormData(form);
      try {
        await alarmCommand(a, "shelve", { reason: String(f.get("reason") || ""), duration: String(f.get("duration") || "") });
        dlg.close(); dlg.remove();
      } catch (x) { say(err, x); } } },
      el("h3", { text: `Shelve ${a.name}` }),
      el("p", { class: "muted", text: "A shelved alarm is not annunciated; it comes back by itself when its time runs out (line clock)." }),
      el("label", {}, "Reason ", el("input", { name: "reason", required: true, placeholder: "why (recorded)" })),
      el("label", {}, " For ", el("input", { name: "duration", value: "30 min", required: true, size: 8 })),
      el("div", { class: "commands" }, el("button", { type: "submit", text: "Shelve", "data-shelve-ok": a.name }),
        el("button", { type: "button", text: "Cancel", onclick: () => { dlg.close(); dlg.remove(); } })), err);
    dlg.append(form);
    document.body.append(dlg);
    dlg.showModal();
    msg.textContent = "";
  }

  // ------------------------------------------------------------------ routing and frames
  window.addEventListener("hashchange", route);
  function route() {
    if (!S.token) return;
    const v = (location.hash || "#plant").slice(1).split("/")[0];
    S.view = ["plant", "run", "trends", "alarms", "records"].includes(v) ? v : "plant";
    document.querySelectorAll(".view").forEach((s) => { s.hidden = s.id !== `view-${S.view}`; });
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("on", a.dataset.view === S.view));
    if (S.view !== "plant") { S.faceplate = ""; $("#faceplate").hidden = true; }
    render();
  }
  function render() {
    if (!S.token || !S.topo) return;
    ({ plant: renderPlant, run: renderRun, trends: renderTrends, alarms: renderAlarms,
       records: renderRecords })[S.view]();
    renderBanner();
    if (S.faceplate) renderFaceplate();
  }
  function schedule() { if (!S.frame) S.frame = requestAnimationFrame(flush); }
  function flush() {  // live updates touch only the text that changed, once per frame
    S.frame = 0;
    if (S.view === "plant") for (const tag of S.dirty) updateModule(tag);
    if (S.faceplate && S.dirty.has(S.faceplate)) updateFaceplate();
    S.dirty.clear();
    if (S.view === "run") updateRun();
    if (S.view === "trends") drawTrend();
    const c = $("#clock"); if (c) c.textContent = `line time ${dur(lineNow())}`;
    // the displayed value is in the DOM now: what the benchmark measures as display lag
    const t = performance.now();
    for (const l of S.lag) l.shown = t;
    S.lagDone = (S.lagDone || []).concat(S.lag).slice(-5000); S.lag = [];
  }

  // ------------------------------------------------------------------ plant: diagram
  function symbolClass(m) {
    const t = m.type.toLowerCase(), c = (m.category || "").toLowerCase();
    if (/backpressure|bpr/.test(t)) return "bpr";
    for (const k of ["pump", "mixer", "reactor", "valve", "analyzer", "crystallizer"])
      if (c.includes(k) || t.includes(k)) return k;
    if (/analy|pat/.test(c + t)) return "analyzer";
    return "module";
  }
  function layout(topo) {
    // left to right by flow: rank = longest path from the feeds; a feed sits just left of
    // the first module it feeds; within a rank modules follow their upstream neighbours
    const tags = topo.modules.map((m) => m.tag);
    const up = {}, down = {};
    for (const t of tags) { up[t] = []; down[t] = []; }
    for (const c of topo.connections) {
      const a = c.from.split(".")[0], b = c.to.split(".")[0];
      if (a in down && b in up && !down[a].includes(b)) { down[a].push(b); up[b].push(a); }
    }
    const rank = {};
    const visit = (t, seen) => {
      if (t in rank) return rank[t];
      if (seen.has(t)) return 0;  // a recycle loop: cut it here
      seen.add(t);
      rank[t] = up[t].length ? Math.max(...up[t].map((u) => visit(u, seen) + 1)) : 0;
      return rank[t];
    };
    for (const t of tags) visit(t, new Set());
    for (const t of tags) if (!up[t].length && down[t].length)
      rank[t] = Math.max(0, Math.min(...down[t].map((d) => rank[d])) - 1);
    const cols = [];
    for (const t of tags) (cols[rank[t]] = cols[rank[t]] || []).push(t);
    const pos = {};
    cols.forEach((col, r) => col.forEach((t, i) => { pos[t] = { r, i }; }));
    for (let pass = 0; pass < 3; pass++) cols.forEach((col) => {
      const bary = (t) => {
        const n = [...up[t], ...down[t]].filter((x) => x in pos);
        return n.length ? n.reduce((s, x) => s + pos[x].i, 0) / n.length : pos[t].i;
      };
      col.sort((a, b) => bary(a) - bary(b));
      col.forEach((t, i) => { pos[t].i = i; });
    });
    const W = 190, H = 140, rows = Math.max(...cols.map((c) => (c ? c.length : 0)));
    const out = {};
    cols.forEach((col, r) => col.forEach((t, i) => {
      const offset = (rows - col.length) * H / 2;  // centre short columns on the main line
      out[t] = { x: 30 + r * W, y: 20 + offset + i * H };
    }));
    return { pos: out, width: 60 + cols.length * W, height: 40 + rows * H, down };
  }
  function symbol(kind) {
    const g = sv("g", { class: `sym sym-${kind}` });
    const add = (tag, a) => g.append(sv(tag, a));
    switch (kind) {
      case "pump": add("circle", { cx: 25, cy: 25, r: 22 }); add("path", { d: "M14 12 L40 25 L14 38 Z", class: "mark" }); break;
      case "mixer": add("circle", { cx: 25, cy: 25, r: 18 }); add("path", { d: "M12 12 L38 38 M38 12 L12 38", class: "line" }); break;
      case "reactor": add("rect", { x: 1, y: 8, width: 48, height: 34, rx: 4 });
        add("path", { d: "M6 25 q4 -12 8 0 t8 0 t8 0 t8 0 t8 0", class: "line" }); break;
      case "valve": add("path", { d: "M3 12 L47 38 L47 12 L3 38 Z" }); break;
      case "bpr": add("path", { d: "M3 22 L47 46 L47 22 L3 46 Z" }); add("path", { d: "M25 34 L25 12", class: "line" });
        add("path", { d: "M13 12 A12 10 0 0 1 37 12 Z" }); break;
      case "analyzer": add("circle", { cx: 25, cy: 25, r: 22 }); g.append(sv("text", { x: 25, y: 30, class: "symtext", text: "AT" })); break;
      case "crystallizer": add("path", { d: "M5 4 L5 34 Q25 52 45 34 L45 4 Z" }); add("path", { d: "M25 0 L25 34 M17 30 L33 30", class: "line" }); break;
      default: add("rect", { x: 3, y: 5, width: 44, height: 40 });
    }
    return g;
  }
  function mainValues(m) {  // what is shown on the diagram: the measured values first
    const order = { AnaMon: 0, AnaView: 1, BinMon: 2, BinView: 3, BinVlv: 2, AnaVlv: 2, AnaDrv: 2 };
    return m.assemblies.filter((a) => a.class in order)
      .sort((a, b) => order[a.class] - order[b.class]).slice(0, 2);
  }
  function renderPlant() {
    const view = $("#view-plant");
    const L = layout(S.topo);
    const svg = sv("svg", { viewBox: `0 0 ${L.width} ${L.height}`, class: "diagram", role: "img",
                            "aria-label": `process diagram of ${S.topo.plant}` });
    svg.append(sv("defs", {}, sv("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, sv("path", { d: "M0 0 L10 5 L0 10 z", class: "arrowhead" }))));
    const edges = sv("g", { class: "edges" });
    for (const [a, ds] of Object.entries(L.down)) for (const b of ds) {
      const p = L.pos[a], q = L.pos[b];
      const x1 = p.x + 50, y1 = p.y + 25, x2 = q.x - 2, y2 = q.y + 25, xm = x2 - 20;
      const d = y1 === y2 ? `M${x1} ${y1} L${x2} ${y2}` : `M${x1} ${y1} L${xm} ${y1} L${xm} ${y2} L${x2} ${y2}`;
      edges.append(sv("path", { d, "marker-end": "url(#arrow)", "data-edge": `${a}-${b}` }));
    }
    svg.append(edges);
    for (const m of S.topo.modules) {
      const p = L.pos[m.tag];
      const g = sv("g", { class: "module", transform: `translate(${p.x},${p.y})`, "data-tag": m.tag,
                          tabindex: 0, role: "button", "aria-label": `module ${m.tag}` });
      g.append(sv("rect", { x: -45, y: -8, width: 140, height: 136, class: "hit" }));  // the click target
      g.append(sv("rect", { x: -6, y: -6, width: 62, height: 62, class: "frame" }));
      g.append(symbol(symbolClass(m)));
      g.append(sv("text", { x: 25, y: 70, class: "tag", text: m.tag }));
      g.append(sv("text", { x: 25, y: 84, class: "state", "data-role": "state" }));
      mainValues(m).forEach((a, i) => g.append(sv("text", { x: 25, y: 98 + i * 13, class: "value", "data-da": a.name })));
      g.addEventListener("click", () => openFaceplate(m.tag));
      g.addEventListener("keydown", (e) => { if (e.key === "Enter") openFaceplate(m.tag); });
      svg.append(g);
    }
    const legend = el("p", { class: "legend", text: "Grey is normal. Abnormal states are framed and named: " +
      "FAULT (module), Held / Aborted (service), ? (bad value). Click a module for its faceplate." });
    view.replaceChildren(svg, legend);
    for (const m of S.topo.modules) updateModule(m.tag);
  }
  function moduleOf(tag) { return S.topo.modules.find((m) => m.tag === tag); }
  function updateModule(tag) {
    const g = document.querySelector(`#view-plant g.module[data-tag="${CSS.escape(tag)}"]`);
    const m = moduleOf(tag);
    if (!g || !m) return;
    const states = m.services.map((s) => S.services[`${tag}.${s.name}`]).filter(Boolean);
    const fault = S.faulted[tag];
    const odd = states.find((s) => ABNORMAL.has(s));
    const running = states.find((s) => s === "Execute");
    const st = fault ? "FAULT" : odd || running || states[0] || "";
    g.querySelector('[data-role="state"]').textContent = st;
    g.classList.toggle("alarm", !!fault || states.includes("Aborted"));
    g.classList.toggle("warn", !fault && !!odd);
    g.classList.toggle("running", !!running);
    for (const t of g.querySelectorAll("text.value")) {
      const a = m.assemblies.find((x) => x.name === t.dataset.da);
      const v = S.values[`${tag}.${a.name}`];
      const bad = !v || v.quality !== "good";
      t.textContent = `${a.name} ${bad ? "?" : fmt(v.value)} ${a.unit || ""}`.trim();
      t.classList.toggle("bad", bad);
    }
  }

  // ------------------------------------------------------------------ faceplate
  function openFaceplate(tag) { S.faceplate = tag; renderFaceplate(); }
  function limits(a) {
    return `${a.min === null ? "" : fmt(a.min)} … ${a.max === null ? "" : fmt(a.max)} ${a.unit || ""}`.trim();
  }
  function checkEntry(a, text) {  // the same limits the service checks: refused before sending
    const s = String(text).trim();
    if (s === "") return { error: `${a.name}: enter a value` };
    const n = Number(s);
    if (a.kind === "number") {
      if (!isFinite(n)) return { error: `${a.name}: '${s}' is not a number` };
      if ((a.min !== null && n < a.min) || (a.max !== null && n > a.max))
        return { error: `${a.name}: ${s} is outside its limits [${fmt(a.min)}, ${fmt(a.max)}] ${a.unit}`.trim() };
      return { value: a.unit ? `${s} ${a.unit}` : s };
    }
    return { value: s };
  }
  // ---- operation mode and source (MTP State*Act / Src*Act) of a service or parameter
  const OPERATION = ["Offline", "Operator", "Automatic"], SOURCE = ["Internal", "External"];
  function modeControl(m, obj, enabled, msg) {
    // only what the module offers: a service or parameter without modes gets nothing
    const cur = (S.modes[m.tag] || {})[obj];
    if (!cur) return null;
    const pick = (name, options, value) => {
      const sel = el("select", { "data-mode": name, "data-object": obj, disabled: !enabled,
        "aria-label": `${obj} ${name === "operation" ? "operation mode" : "source"}` });
      for (const o of options) sel.append(el("option", { value: o, text: o, selected: o === value }));
      if (value === null) sel.append(el("option", { value: "", text: "—", selected: true }));
      sel.addEventListener("change", () => switchMode(m, obj, name, sel.value, msg));
      return sel;
    };
    return el("span", { class: "modes", "data-modes": obj },
      el("span", { class: "muted", text: "mode " }), pick("operation", OPERATION, cur.operation),
      cur.source !== null || cur.operation === "Automatic" ? pick("source", SOURCE, cur.source) : "",
      el("span", { class: "modetext", "data-mode-text": obj, text: modeText(cur) }));
  }
  function modeText(cur) {  // the confirmed modes as text: never only a select's colour
    return cur ? ` ${cur.operation || "?"}${cur.source ? ` · ${cur.source}` : ""}` : "";
  }
  async function switchMode(m, obj, name, value, msg) {
    if (!value) return;
    try {
      const d = await api(`/modules/${m.tag}/modes/${encodeURIComponent(obj)}`, { method: "PUT", json: { [name]: value } });
      (S.modes[m.tag] = S.modes[m.tag] || {})[obj] = { operation: d.operation, source: d.source };
      msg.textContent = `${obj}: ${modeText(d).trim()}`;
    } catch (err) { say(msg, err); }
    renderFaceplate();
  }
  function renderFaceplate() {
    const m = moduleOf(S.faceplate);
    const box = $("#faceplate");
    if (!m) { box.hidden = true; return; }
    box.hidden = false;
    const ctl = can(CONTROL);
    const runActive = S.plant && S.plant.active_run !== null;
    const why = !ctl ? `your role (${S.role}) may not command` :
      runActive ? `run ${S.plant.active_run} commands the modules` : "";
    const msg = el("p", { class: "error", role: "alert", "data-role": "fp-error" });
    const parts = [el("button", { class: "close", "aria-label": "close", text: "×", onclick: () => { S.faceplate = ""; box.hidden = true; } }),
      el("h2", { text: `${m.tag} · ${m.type}` }), el("p", { class: "muted", text: m.description || "" })];
    if (why) parts.push(el("p", { class: "note", text: `Read only: ${why}.` }));
    else if (Object.keys(S.modes[m.tag] || {}).length) parts.push(el("p", { class: "muted",
      text: "A command from here (or a run) first requests Automatic · External, as the MTP handshake does." }));
    for (const svc of m.services) {
      const key = `${m.tag}.${svc.name}`;
      const procSel = el("select", { "aria-label": `${svc.name} procedure`, disabled: !ctl || runActive });
      for (const p of svc.procedures) procSel.append(el("option", { value: p.name, selected: p.default, text: p.name }));
      const params = el("div", { class: "params" });
      const showParams = () => {
        const proc = svc.procedures.find((p) => p.name === procSel.value) || svc.procedures[0];
        params.replaceChildren(...[...new Set([...proc.parameters, ...svc.config_parameters])].map((name) => {
          const a = m.assemblies.find((x) => x.name === name);
          return el("label", {}, `${name} `, el("input", { name, "data-param": name, inputmode: "decimal",
            placeholder: a ? limits(a) : "", disabled: !ctl || runActive, "aria-label": `${svc.name} ${name}` }),
            el("span", { class: "unit", text: a ? a.unit : "" }));
        }));
      };
      procSel.addEventListener("change", showParams); showParams();
      const buttons = el("div", { class: "commands" });
      for (const c of COMMANDS) {
        buttons.append(el("button", { "data-command": c, "data-service": svc.name, text: c,
          onclick: () => command(m, svc, c, procSel.value, params, msg) }));
      }
      parts.push(el("section", { class: "service", "data-service": svc.name },
        el("h3", {}, `${svc.name} `, el("span", { class: "svcstate", "data-state": key, text: S.services[key] || "" })),
        modeControl(m, svc.name, ctl && !runActive, msg),
        el("label", {}, "Procedure ", procSel), params, buttons));
    }
    // a mode column only for a module whose parameters have modes of their own (a PEA's)
    const paramModes = m.assemblies.some((a) => (S.modes[m.tag] || {})[a.name]);
    const rows = m.assemblies.map((a) => {
      const set = a.settable ? el("span", { class: "set" },
        el("input", { "data-set": a.name, inputmode: "decimal", placeholder: limits(a), disabled: !ctl || runActive,
                      "aria-label": `set ${a.name}` }),
        el("button", { text: "Set", "data-set-button": a.name, disabled: !ctl || runActive,
                       onclick: (e) => setValue(m, a, e.target.previousSibling.value, msg) })) : "";
      return el("tr", { "data-da": a.name }, el("th", { text: a.name, title: a.description || a.class }),
        el("td", { class: "v" }), el("td", { text: a.unit || "" }), el("td", { class: "q" }), el("td", { class: "age" }),
        el("td", { class: "lim", text: a.min !== null || a.max !== null ? limits(a) : "" }), el("td", {}, set),
        paramModes ? el("td", {}, modeControl(m, a.name, ctl && !runActive, msg) || "") : null);
    });
    parts.push(el("h3", { text: "Data assemblies" }), el("table", { class: "das" },
      el("thead", {}, el("tr", {}, ...["name", "value", "unit", "quality", "age", "limits", "", ...(paramModes ? ["mode"] : [])].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows)), msg);
    box.replaceChildren(...parts);
    updateFaceplate();
  }
  function updateFaceplate() {
    const m = moduleOf(S.faceplate), box = $("#faceplate");
    if (!m || box.hidden) return;
    const ctl = can(CONTROL), runActive = S.plant && S.plant.active_run !== null;
    for (const svc of m.services) {
      const key = `${m.tag}.${svc.name}`;
      const st = box.querySelector(`[data-state="${CSS.escape(key)}"]`);
      if (st) { st.textContent = S.services[key] || ""; st.classList.toggle("abnormal", ABNORMAL.has(S.services[key])); }
      const en = (S.cmdEn[m.tag] || {})[svc.name] || [];
      for (const b of box.querySelectorAll(`button[data-service="${CSS.escape(svc.name)}"]`)) {
        // clickable only if CommandEn enables it and the role may command (the service
        // refuses it otherwise anyway)
        b.disabled = !ctl || runActive || !en.includes(b.dataset.command);
      }
    }
    for (const t of box.querySelectorAll("[data-mode-text]")) {
      const cur = (S.modes[m.tag] || {})[t.dataset.modeText];
      t.textContent = modeText(cur);
      for (const sel of box.querySelectorAll(`select[data-object="${CSS.escape(t.dataset.modeText)}"]`)) {
        sel.disabled = !ctl || runActive;
        const v = cur ? cur[sel.dataset.mode] : null;
        if (v && sel.value !== v && document.activeElement !== sel) sel.value = v;
      }
    }
    const now = Date.now() / 1000;
    for (const tr of box.querySelectorAll("tr[data-da]")) {
      const v = S.values[`${m.tag}.${tr.dataset.da}`];
      tr.querySelector(".v").textContent = v ? fmt(v.value) : "—";
      tr.querySelector(".q").textContent = v ? v.quality : "unknown";
      tr.querySelector(".age").textContent = v && v.at ? `${Math.max(0, now - v.at).toFixed(0)} s` : "—";
      tr.classList.toggle("bad", !v || v.quality !== "good");
    }
  }
  async function command(m, svc, c, procedure, params, msg) {
    const parameters = {};
    for (const input of params.querySelectorAll("input[data-param]")) {
      if (input.value.trim() === "") continue;
      const a = m.assemblies.find((x) => x.name === input.dataset.param);
      const r = a ? checkEntry(a, input.value) : { value: input.value };
      if (r.error) { msg.textContent = `refused: ${r.error}`; input.setAttribute("aria-invalid", "true"); return; }
      input.removeAttribute("aria-invalid");
      parameters[input.dataset.param] = r.value;
    }
    try {
      await api(`/modules/${m.tag}/services/${svc.name}/${c.toLowerCase()}`, { method: "POST", json: { procedure, parameters } });
      msg.textContent = ""; later("plant", 50);
    } catch (err) { say(msg, err); }
  }
  async function setValue(m, a, text, msg) {
    const r = checkEntry(a, text);
    if (r.error) { msg.textContent = `refused: ${r.error}`; return; }
    try {
      const d = await api(`/modules/${m.tag}/values/${a.name}`, { method: "PUT", json: { value: r.value } });
      msg.textContent = `${a.name} set to ${fmt(d.value)} ${d.unit}`;
    } catch (err) { say(msg, err); }
  }

  // ------------------------------------------------------------------ run view
  function currentRun() {
    const active = S.plant && S.plant.active_run;
    return S.runs.find((r) => r.id === active) || S.runs.find((r) => !r.final) || S.runs[0] || null;
  }
  function renderRun() {
    const view = $("#view-run");
    const parts = [];
    if (can(QUEUE)) {
      const msg = el("p", { class: "error", role: "alert" });
      const form = el("form", { class: "queue", onsubmit: async (e) => {
        e.preventDefault();
        const f = new FormData(form), parameters = {};
        for (const line of String(f.get("parameters")).split("\n")) {
          const [k, ...v] = line.split("="); if (k.trim()) parameters[k.trim()] = v.join("=").trim();
        }
        try { await api("/runs", { method: "POST", json: { recipe: f.get("recipe"), parameters, mode: f.get("mode") } }); msg.textContent = ""; later("runs", 10); }
        catch (err) { say(msg, err); }
      } },
      el("label", {}, "Recipe ", el("input", { name: "recipe", value: "lomustine/campaign", required: true, oninput: () => gate() })),
      el("label", {}, "Mode ", el("select", { name: "mode", onchange: () => gate() },
        ...["simulation", "development", "production"].map((m) => el("option", { value: m, text: m,
          selected: m === (S.plant && S.plant.simulated ? "simulation" : "development") })))),
      el("label", {}, "Parameters (name=value with unit, one a line) ", el("textarea", { name: "parameters", rows: 2 })),
      el("button", { type: "submit", text: "Queue run" }), el("p", { class: "muted", id: "mode-note" }), msg);
      // production runs only an effective recipe version: the button says so before the
      // service refuses it (it refuses it anyway)
      const gate = () => {
        const f = new FormData(form), note = $("#mode-note", form), button = $("button[type=submit]", form);
        const name = String(f.get("recipe") || "").trim().replace(/\.ya?ml$/, "");
        const file = ((S.recipes || {}).files || []).find((x) => x.recipe.replace(/\.ya?ml$/, "") === name);
        const blocked = f.get("mode") === "production" && !(file && file.runs_in_production);
        button.disabled = blocked;
        note.textContent = blocked ? `production: '${name}' is not an approved, effective recipe version (${file && file.state ? file.state : "not registered"})` :
          f.get("mode") === "production" ? "" : `${f.get("mode")} mode: the record is marked as not a production batch`;
      };
      parts.push(form);
      setTimeout(gate, 0);
      api("/recipes").then((x) => { S.recipes = x; gate(); }).catch(() => {});
    }
    parts.push(el("div", { id: "run-panel" }));
    view.replaceChildren(...parts);
    updateRun(true);
  }
  let runSig = "";
  // ---- run view parts: times, supervision, parameters (each its own function)
  function runTimes(r) {
    // the run's own (line) time: at 600x an hour of production passes in 6 s of wall time
    const p = r.progress || {};
    const wall = r.t_started ? (r.final ? r.t_ended : Date.now() / 1000) - r.t_started : null;
    // between two reads of the run, its line time goes on: count it here
    const since = r.t_now !== undefined && !r.final ? Math.max(0, lineNow() - r.t_now) : 0;
    const elapsed = p.elapsed !== undefined && p.elapsed !== null && !r.final ? p.elapsed + since : wall;
    if (r.final || p.remaining === undefined) return { elapsed, remaining: r.final ? "—" : "not known yet", step: null };
    const timed = p.step_duration && (r.recipe_state === "Execute");
    const ran = timed ? Math.min(since, Math.max(0, p.step_duration - p.step_elapsed)) : 0;
    const step = p.step_duration ? p.step_duration - p.step_elapsed - ran : null;
    const unknown = p.remaining_unknown || [];
    const known = dur(p.remaining - ran);
    const remaining = unknown.length === 0 ? known
      : `at least ${known} + ${unknown.length} step${unknown.length > 1 ? "s" : ""} of unknown length (${unknown.join(", ")})`;
    return { elapsed, remaining, step };
  }
  function runSupervision(r) {
    // divert and steady state, by text: named before their first verdict, never blank
    const items = [el("dt", { text: "Divert" }), el("dd", { id: "divert", text: r.divert === null ? "none in this recipe" : S.divert === null ? `${r.divert || "valve"}: no decision yet`
        : S.divert ? "to product" : "to waste" })];
    const names = [...new Set([...(r.steady_states || []), ...Object.keys(S.steady)])];
    for (const k of names) items.push(el("dt", { text: `Steady state ${k}` }),
      el("dd", { "data-steady": k, text: k in S.steady ? (S.steady[k] ? "steady" : "not steady") : "not steady yet" }));
    return el("dl", { class: "supervision" }, ...items);
  }
  function runCampaign(r) {  // a self-optimising campaign while it runs (docs/optimisation.md)
    const c = r.optimize;
    if (!c) return "";
    const unit = {};
    for (const v of c.variables) for (const t of v.targets) unit[t] = v.unit;
    // the objective in the unit people read it in (the product's rate, %), not in SI
    const [ounit, ofactor] = (c.units || {}).objective || ["", 1];
    const objective = (v) => v === null || v === undefined ? "—" : `${fmt(v * ofactor)}${ounit ? " " + ounit : ""}`;
    const points = (sp) => Object.entries(sp).map(([k, v]) => `${k} = ${fmt(v)}${unit[k] ? " " + unit[k] : ""}`).join("; ");
    // the outcome in words, never only a colour (ISA-101)
    const result = (e) => e.error ? `failed: ${e.error}` : e.index === c.best ? "best so far" : e.feasible ? "feasible" : "infeasible";
    const rows = c.experiments.map((e) => el("tr", { "data-experiment": String(e.index),
      class: e.index === c.best ? "best" : e.feasible ? "" : "abnormal" },
      el("td", { text: String(e.index + 1) }), el("td", { text: points(e.setpoints) }),
      el("td", { text: objective(e.objective) }), el("td", { text: result(e) })));
    if (c.current) rows.push(el("tr", { class: "current", "data-experiment": String(c.current.index) },
      el("td", { text: String(c.current.index + 1) }), el("td", { text: points(c.current.setpoints) }),
      el("td", { text: "—" }), el("td", { text: "running: waiting for steady state, then the window" })));
    const best = c.experiments.find((e) => e.index === c.best);
    const ended = !c.done ? null : el("p", { id: "campaign-done", text: best
      ? `Search ended${c.converged ? " (converged)" : ""}: the line runs at experiment ${best.index + 1}, the best feasible (objective ${objective(best.objective)}).`
      : "Search ended without a feasible experiment: the step fails and the recipe's on_error decides." });
    const goal = `maximize ${c.maximize}` + (c.constraints.length ? ` subject to ${c.constraints.join(", ")}` : "") +
      ` · ${c.algorithm}` + (c.prior !== "none" ? `, prior: ${c.prior}` : "");
    return el("section", { class: "campaign", "aria-label": "optimisation campaign" },
      el("h3", { id: "campaign-head", text: `Optimisation ${c.name}: ${c.experiments.length} of ${c.budget} experiments` }),
      el("p", { class: "muted", text: goal }), ended || "",
      el("table", { class: "experiments" }, el("thead", {}, el("tr", {},
        ...["#", "set points", `objective (${c.maximize})`, "result"].map((h) => el("th", { text: h })))), el("tbody", {}, ...rows)));
  }
  function runParameters(r) {
    const values = r.parameter_values || r.parameters || {};
    const rows = Object.entries(values).map(([k, v]) => el("tr", {},
      el("th", { text: k }), el("td", { text: String(v) }),
      el("td", { class: "muted", text: k in (r.parameters || {}) ? "set for this run" : "default" })));
    if (!rows.length) return null;
    return el("details", { class: "params", open: S.paramsOpen !== false,
      ontoggle: (e) => { S.paramsOpen = e.target.open; } }, el("summary", { text: `Parameters (${rows.length})` }),
      el("table", { class: "runparams" }, el("tbody", {}, ...rows)));
  }
  function updateRun(force) {
    const panel = $("#run-panel");
    if (!panel) return;
    const r = currentRun();
    const sig = JSON.stringify([r && { ...r, t_now: 0, progress: { ...(r.progress || {}), elapsed: 0, step_elapsed: 0, remaining: 0 } },
                                S.divert, S.steady, unacked().map((a) => a.name)]);
    if (r) {  // the clocks tick without rebuilding the panel
      const times = runTimes(r);
      const t = $("#run-elapsed"); if (t) t.textContent = dur(times.elapsed);
      const rem = $("#run-remaining"); if (rem) rem.textContent = times.remaining;
      const sr = $("#step-remaining");
      if (sr) sr.textContent = dur(times.step);
    }
    if (!force && sig === runSig) return;
    runSig = sig;
    if (!r) { panel.replaceChildren(el("p", { text: "No run yet." })); return; }
    const ctl = can(CONTROL), rs = r.recipe_state || r.state;
    const msg = el("p", { class: "error", role: "alert" });
    const btn = (action, ok) => el("button", { "data-action": action, text: action[0].toUpperCase() + action.slice(1),
      disabled: !ctl || !ok || r.final, onclick: async () => {
        try { await api(`/runs/${r.id}/${action}`, { method: "POST" }); later("runs", 10); } catch (err) { say(msg, err); } } });
    const p = r.progress || {};
    const times = runTimes(r);
    const head = el("div", { class: "runhead" },
      el("h2", { text: `Run ${r.id}: ${r.recipe}` }, " ", el("span", { class: `mode mode-${r.mode}`, id: "run-mode", text: r.mode })),
      el("p", {}, "State ", el("strong", { id: "run-state", class: ABNORMAL.has(rs) ? "abnormal" : "", text: rs }),
        r.step ? ` · step ${r.step}` : "",
        times.step !== null ? el("span", {}, " (", el("span", { id: "step-remaining", text: dur(times.step) }), " left)") : "",
        p.steps_total ? ` · steps done ${p.steps_done} of ${p.steps_total}` : ""),
      el("p", { class: "times" }, "Elapsed ", el("strong", { id: "run-elapsed", text: dur(times.elapsed) }),
        " · remaining ", el("strong", { id: "run-remaining", text: times.remaining }),
        S.plant && S.plant.speed !== 1 ? el("span", { class: "muted", text: ` (line time; the clock runs ${S.plant.speed}x)` }) : ""),
      r.held_by && r.held_by.length ? el("p", { class: "abnormal", text: `Held by: ${r.held_by.join("; ")}` }) : null,
      r.message ? el("p", { class: "muted", text: r.message }) : null,
      el("div", { class: "commands" }, btn("hold", rs === "Execute"), btn("resume", rs === "Held"),
        btn("stop", r.state === "running" || r.state === "queued"), btn("abort", r.state === "running" || r.state === "queued")), msg);
    const chart = el("ol", { class: "steps", "aria-label": "step chart" });
    let passed = true;
    for (const b of r.plan || []) {
      const inner = el("ol", {});
      b.steps.forEach((s, i) => {
        const nested = ((b.inner || [])[i] || []).includes(r.step);
        const cur = !!r.step && (s === r.step || nested);
        if (cur) passed = false;
        const mark = cur ? "▶ " : passed && r.step ? "✓ " : "";
        inner.append(el("li", { class: cur ? "current" : passed && r.step ? "done" : "", "data-step": s,
          text: `${mark}${s || "(unnamed)"}${cur && nested ? ` › ${r.step}` : ""}` }));
      });
      chart.append(el("li", { class: "block" }, el("span", { text: b.block }), inner));
    }
    const prompts = (r.prompts || []).map((q) => el("div", { class: "prompt", role: "dialog" },
      el("p", { text: `${q.source}: ${q.message}` }),
      ...q.choices.map((c) => el("button", { text: c, disabled: !ctl, onclick: async () => {
        try { await api(`/runs/${r.id}/answer`, { method: "POST", json: { prompt: q.id, choice: c } }); later("runs", 10); }
        catch (err) { say(msg, err); } } }))));
    const inter = unacked().filter((a) => a.kind === "interlock").map((a) => el("div", { class: "interlock abnormal" },
      `Interlock ${a.name}: ${a.message} `, el("button", { "data-ack": a.name, text: "Acknowledge", disabled: !ctl,
        onclick: () => ack(a).catch((err) => say(msg, err)) })));
    panel.replaceChildren(head, ...prompts, ...inter, runSupervision(r), runCampaign(r), runExceptions(r, msg), runParameters(r) || "",
      el("h3", { text: "Steps" }), chart);
  }
  // ---- interlock bypass and manual divert override: signed actions (docs/signatures.md).
  // Their dialogs live on the body, so a rebuild of the run panel does not wipe what is typed.
  const lineT = (t) => `t=${Math.round(t)} s`;
  function runExceptions(r, msg) {
    if (!r.interlocks && !r.divert_control) return "";
    const eng = ["engineer", "admin"].includes(S.role), ctl = can(CONTROL);
    const rows = (r.interlocks || []).map((i) => {
      const state = i.bypass ? `BYPASSED by ${i.bypass.user} until ${lineT(i.bypass.until)}${i.condition_true ? " · condition true, action not taken" : ""}`
        : i.tripped ? "TRIPPED: action in force" : "armed";
      return el("tr", { "data-interlock": i.name, class: i.bypass || i.tripped ? "abnormal" : "" },
        el("td", { text: i.name }), el("td", { text: `${i.when} → ${i.action}` }), el("td", { class: "il-state", text: state }),
        el("td", {}, i.bypass ? el("button", { text: "Unbypass", "data-unbypass": i.name, disabled: !ctl || r.final, onclick: async () => {
          try { await api(`/runs/${r.id}/interlocks/${encodeURIComponent(i.name)}/unbypass`, { method: "POST" }); later("runs", 10); } catch (err) { say(msg, err); } } })
          : el("button", { text: "Bypass…", "data-bypass": i.name, disabled: !eng || r.final,
            title: eng ? "a signed action" : "engineer or admin only", onclick: () => signedDialog(`bypass interlock ${i.name}`,
              "While bypassed the interlock's condition is still judged and recorded, but its action is not taken. The bypass ends by itself when its time runs out (line clock) and with the run.",
              null, (json) => api(`/runs/${r.id}/interlocks/${encodeURIComponent(i.name)}/bypass`, { method: "POST", json })) })));
    });
    const parts = [];
    if (rows.length) parts.push(el("h3", { text: "Interlocks" }), el("table", { class: "interlocks" },
      el("thead", {}, el("tr", {}, ...["name", "condition → action", "state", ""].map((h) => el("th", { text: h })))), el("tbody", {}, ...rows)));
    const d = r.divert_control;
    if (d) {
      const o = d.override;
      parts.push(el("p", { class: o ? "abnormal" : "", id: "divert-mode" }, `Divert valve ${d.valve}: ${d.to_product ? "to product" : "to waste"} · `,
        el("strong", { text: o ? `MANUAL OVERRIDE at ${o.to_product ? "product" : "waste"} by ${o.user} until ${lineT(o.until)}` : "automatic" }), " ",
        o ? el("button", { text: "Release", "data-divert-release": "", disabled: !ctl || r.final, onclick: async () => {
          try { await api(`/runs/${r.id}/divert/release`, { method: "POST" }); later("runs", 10); } catch (err) { say(msg, err); } } })
          : el("button", { text: "Override divert…", "data-divert-override": "", disabled: !ctl || r.final, onclick: () => signedDialog("override divert",
            "The valve is held where you put it for the time given, then divert control is automatic again. An interlock that trips ends an override to product (safe state first).",
            el("label", {}, "Position ", el("select", { name: "position" }, el("option", { value: "waste", text: "waste" }), el("option", { value: "product", text: "product" }))),
            (json) => api(`/runs/${r.id}/divert/override`, { method: "POST", json })) })));
    }
    return el("div", { class: "exceptions" }, ...parts);
  }
  function signedDialog(title, note, extra, send) {
    const err = el("p", { class: "error", role: "alert" });
    const dlg = el("dialog", { class: "signed", "aria-label": title });
    const form = el("form", { method: "dialog", onsubmit: async (e) => {
      e.preventDefault();
      const f = new FormData(form);
      const json = { duration: String(f.get("duration") || ""), signature: { username: f.get("username"), password: f.get("password"), reason: f.get("reason") } };
      if (f.get("position")) json.position = f.get("position");
      try { await send(json); dlg.close(); dlg.remove(); later("runs", 10); } catch (x) { say(err, x); } } },
      el("h3", { text: title[0].toUpperCase() + title.slice(1) }), el("p", { class: "muted", text: note }), extra || "",
      el("label", {}, "For ", el("input", { name: "duration", value: "10 min", required: true, size: 8 })),
      el("label", {}, "User name ", el("input", { name: "username", required: true, autocomplete: "off", value: S.user })),
      el("label", {}, "Password ", el("input", { name: "password", type: "password", required: true, autocomplete: "off" })),
      el("label", {}, "Reason ", el("input", { name: "reason", required: true })),
      el("div", { class: "commands" }, el("button", { type: "submit", text: "Sign" }),
        el("button", { type: "button", text: "Cancel", onclick: () => { dlg.close(); dlg.remove(); } })), err);
    dlg.append(form);
    document.body.append(dlg);
    dlg.showModal();
  }

  // ------------------------------------------------------------------ trends
  function numericTags() {
    const out = [];
    for (const m of S.topo.modules) for (const a of m.assemblies) if (a.kind === "number") out.push({ tag: `${m.tag}.${a.name}`, unit: a.unit });
    return out;
  }
  function renderTrends() {
    const view = $("#view-trends");
    const pick = el("select", { "aria-label": "tag" });
    for (const t of numericTags()) pick.append(el("option", { value: t.tag, text: `${t.tag} (${t.unit || "-"})` }));
    const msg = el("p", { class: "error", role: "alert" });
    const canvas = el("canvas", { id: "trend", width: 1000, height: 420, "aria-label": "trend" });
    const list = el("span", { class: "tags", text: S.trend.tags.join(", ") });
    const zoom = (f) => { S.trend.span = Math.max(10, S.trend.span * f); reload(); };
    const pan = (f) => { S.trend.end = (S.trend.end || toEpoch(lineNow())) + f * S.trend.span; reload(); };
    const reload = () => Promise.all(S.trend.tags.map(loadHistory)).then(drawTrend).catch((e) => say(msg, e));
    view.replaceChildren(el("div", { class: "toolbar" }, pick,
      el("button", { text: "Add", "data-trend": "add", onclick: async () => { if (!S.trend.tags.includes(pick.value)) S.trend.tags.push(pick.value);
        list.textContent = S.trend.tags.join(", "); await reload(); } }),
      el("button", { text: "Clear", onclick: () => { S.trend.tags = []; S.trend.data = {}; list.textContent = ""; drawTrend(); } }),
      el("button", { text: "Zoom in", onclick: () => zoom(0.5) }), el("button", { text: "Zoom out", onclick: () => zoom(2) }),
      el("button", { text: "◀ Pan", onclick: () => pan(-0.5) }), el("button", { text: "Pan ▶", onclick: () => pan(0.5) }),
      el("button", { text: "Live", onclick: () => { S.trend.end = null; reload(); } }), list), canvas, msg);
    reload();
  }
  async function loadHistory(tag) {
    const end = S.trend.end || toEpoch(lineNow());
    const h = await api(`/history?tag=${encodeURIComponent(tag)}&start=${end - S.trend.span}&end=${end}&max_points=800`);
    S.trend.units[tag] = h.unit;
    S.trend.data[tag] = h.points.map((p) => [p.t, p.value]);
    const cur = S.values[tag];  // a flat signal stores no new samples: the present value ends it
    if (!S.trend.end && cur && typeof cur.value === "number") S.trend.data[tag].push([end, cur.value]);
    S.trend.history = (S.trend.history || 0) + h.points.length;
  }
  let lastDraw = 0;
  function drawTrend() {
    const c = $("#trend");
    if (!c) return;
    const nowMs = performance.now();
    if (nowMs - lastDraw < 250) { setTimeout(schedule, 260); return; }
    lastDraw = nowMs;
    const g = c.getContext("2d"), W = c.width, H = c.height;
    const end = S.trend.end || toEpoch(lineNow()), start = end - S.trend.span;
    const units = [...new Set(S.trend.tags.map((t) => S.trend.units[t] || ""))];
    const left = 60 * Math.max(1, units.length), right = W - 10, top = 10, bottom = H - 30;
    g.clearRect(0, 0, W, H); g.font = "12px sans-serif"; g.fillStyle = "#222"; g.strokeStyle = "#888";
    g.strokeRect(left, top, right - left, bottom - top);
    const x = (t) => left + (t - start) / (end - start) * (right - left);
    for (let i = 0; i <= 4; i++) {  // time axis, in line time
      const t = start + i * (end - start) / 4;
      g.fillText(new Date(t * 1000).toISOString().slice(11, 19), x(t) - 24, H - 12);
    }
    // events and holds on the time axis
    for (const ev of S.events) {
      const te = toEpoch(ev.t);
      if (te < start || te > end) continue;
      const hold = ev.kind === "recipe_state" && /Held|Holding/.test(JSON.stringify(ev.data));
      if (!hold && !ALARM_KINDS.has(ev.kind) && ev.kind !== "step_started") continue;
      g.strokeStyle = hold || ALARM_KINDS.has(ev.kind) ? "#b00" : "#bbb";
      g.beginPath(); g.moveTo(x(te), top); g.lineTo(x(te), bottom); g.stroke();
    }
    const dashes = [[], [6, 3], [2, 2], [8, 2, 2, 2]];
    units.forEach((u, k) => {  // one axis per unit; a tag shares its unit's axis
      const tags = S.trend.tags.filter((t) => (S.trend.units[t] || "") === u);
      const vals = tags.flatMap((t) => (S.trend.data[t] || []).filter((p) => p[0] >= start && p[0] <= end).map((p) => p[1]));
      let lo = Math.min(...vals), hi = Math.max(...vals);
      if (!isFinite(lo)) { lo = 0; hi = 1; }
      if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
      const y = (v) => bottom - (v - lo) / (hi - lo) * (bottom - top);
      const ax = left - k * 60;
      g.strokeStyle = "#888"; g.beginPath(); g.moveTo(ax, top); g.lineTo(ax, bottom); g.stroke();
      g.fillStyle = "#222"; g.fillText(u || "-", ax - 56, top + 10);
      g.fillText(fmt(hi), ax - 56, top + 24); g.fillText(fmt(lo), ax - 56, bottom);
      tags.forEach((t, j) => {
        const pts = (S.trend.data[t] || []).filter((p) => p[0] >= start - S.trend.span && p[0] <= end);
        g.strokeStyle = "#333"; g.setLineDash(dashes[j % dashes.length]); g.lineWidth = 1.5;
        g.beginPath();
        pts.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
        if (pts.length && !S.trend.end) g.lineTo(x(end), y(pts[pts.length - 1][1]));  // held since
        g.stroke(); g.setLineDash([]); g.lineWidth = 1;
        g.fillText(`${t} ${dashes[j % dashes.length].length ? "(dashed)" : ""}`, left + 8 + j * 170, top + 14 + k * 14);
      });
    });
    c.dataset.points = String(S.trend.tags.reduce((n, t) => n + (S.trend.data[t] || []).length, 0));
  }

  // ------------------------------------------------------------------ alarms
  function renderAlarms() {
    const view = $("#view-alarms");
    const ctl = can(CONTROL), eng = S.role === "engineer" || S.role === "admin";
    const msg = el("p", { class: "error", role: "alert" });
    const rank = { urgent: 0, high: 1, medium: 2, low: 3 };
    const list = [...S.alarms.values()].filter((a) => a.state !== "normal" || a.active)
      .sort((a, b) => (UNACKED.has(b.state) - UNACKED.has(a.state)) || (rank[a.priority] - rank[b.priority]) || (b.since || 0) - (a.since || 0));
    const may = (a, what) => (a.possible || []).includes(what);
    const act = (a, what, label, extra) => el("button", { text: label, [`data-${what}`]: a.name, disabled: !ctl || !may(a, what),
      onclick: () => (extra ? extra() : alarmCommand(a, what)).catch((e) => say(msg, e)) });
    const row = (a) => el("tr", { class: UNACKED.has(a.state) ? "unacked" : "", "data-alarm": a.name, "data-state": a.state },
      el("td", {}, el("span", { class: "shape", "aria-hidden": "true", text: SHAPES[a.state] || "?" }), ` ${a.state}`,
        a.state === "shelved" && a.shelved_until !== null ? el("span", { class: "muted", text: ` until ${dur(a.shelved_until)}` }) : null,
        a.active ? el("span", { class: "muted", text: " · in alarm" }) : null),
      el("td", { text: a.priority }), el("td", { text: dur(a.since) }),
      el("td", {}, a.kind === "interlock" ? `interlock ${a.name}` : a.name,
        a.first_out ? el("strong", { class: "mark", text: " 1st out" }) : null,
        a.chattering ? el("strong", { class: "mark", text: " chattering" }) : null),
      el("td", { text: a.reason ? `${a.message} — ${a.reason}` : a.message }),
      el("td", { class: "commands" },
        UNACKED.has(a.state) ? act(a, "ack", "Acknowledge") : null,
        may(a, "shelve") ? act(a, "shelve", "Shelve…", async () => shelveDialog(a, msg)) : null,
        a.state === "shelved" ? act(a, "unshelve", "Unshelve") : null,
        eng && may(a, "remove") ? act(a, "remove", "Out of service…", async () => {
          const reason = prompt(`Take ${a.name} out of service: reason (recorded)`);
          if (reason) await alarmCommand(a, "out-of-service", { reason }); }) : null,
        eng && a.state === "out of service" ? act(a, "restore", "Return to service", () => alarmCommand(a, "return-to-service", { reason: "returned" })) : null));
    const hist = S.events.filter((e) => e.kind === "alarm_state").slice(-200).reverse()
      .map((e) => el("tr", {}, el("td", { text: dur(e.t) }), el("td", { text: e.source }),
        el("td", {}, el("span", { class: "shape", "aria-hidden": "true", text: SHAPES[e.data.state] || "?" }), ` ${e.data.previous} → ${e.data.state}`),
        el("td", { text: e.data.trigger }), el("td", { text: e.data.user }), el("td", { text: e.data.reason || "" })));
    view.replaceChildren(el("h2", { text: "Alarms" }),
      el("p", { class: "legend", text: Object.entries(SHAPES).map(([k, v]) => `${v} ${k}`).join("   ") }),
      el("table", { class: "alarms" }, el("thead", {}, el("tr", {}, ...["state", "priority", "line time", "alarm", "message", ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...list.map(row))), msg,
      el("h2", { text: "History" }), el("table", { class: "alarms history" },
        el("thead", {}, el("tr", {}, ...["line time", "alarm", "state", "trigger", "by", "reason"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...hist)));
  }

  // ------------------------------------------------------------------ runs and records
  function renderRecords() {
    const view = $("#view-records");
    const rows = S.runs.map((r) => el("tr", {}, el("td", { text: r.id }), el("td", { text: r.recipe }),
      el("td", { text: r.state }), el("td", { text: r.requested_by }),
      el("td", { text: r.t_started ? new Date(r.t_started * 1000).toLocaleString() : "—" }),
      el("td", { text: r.t_ended ? new Date(r.t_ended * 1000).toLocaleString() : "—" }),
      el("td", { text: r.mode }),
      el("td", {}, r.final && r.record_run ? el("button", { text: "Batch report", onclick: () => openReport(r) }) : "",
        r.final && r.record_run ? el("button", { text: "Signatures", "data-sign": r.id, onclick: () => openSignatures(r, sigBox) }) : "")));
    const sigBox = el("div", { id: "signatures" });
    const msg = el("p", { class: "error", role: "alert" });
    const filt = el("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); loadAudit(filt, table, msg); } },
      el("label", {}, "User ", el("input", { name: "user" })), el("label", {}, "Action contains ", el("input", { name: "action" })),
      el("label", {}, "Object ", el("input", { name: "object" })),
      el("button", { type: "submit", text: "Filter" }),
      el("button", { type: "button", text: "Export CSV", onclick: () => exportAudit(filt, msg) }));
    const table = el("table", { class: "audit" });
    const versions = el("table", { class: "versions" });
    api("/recipes").then((d) => {
      S.recipes = d;
      versions.replaceChildren(el("thead", {}, el("tr", {}, ...["recipe", "version", "state", "author", "signatures"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...d.versions.map((v) => el("tr", { "data-version": v.id }, el("td", { text: v.name }), el("td", { text: v.version }),
          el("td", { text: v.state }), el("td", { text: v.author }),
          el("td", { text: v.signatures.map((x) => `${x.meaning} by ${x.printed_name} (${x.user}) ${x.t_utc}`).join("; ") })))));
    }).catch((err) => say(msg, err));
    view.replaceChildren(el("h2", { text: "Runs" }), el("table", { class: "runs" },
      el("thead", {}, el("tr", {}, ...["id", "recipe", "state", "by", "started", "ended", "mode", ""].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows)), sigBox, el("h2", { text: "Recipe versions" }), versions,
      el("h2", { text: "Audit trail" }), filt, table, msg);
    loadAudit(filt, table, msg);
  }
  function auditQuery(form, extra) {
    const f = new FormData(form), q = new URLSearchParams(extra);
    for (const k of ["user", "action", "object"]) if (String(f.get(k) || "").trim()) q.set(k, String(f.get(k)).trim());
    return `/audit?${q}`;
  }
  async function loadAudit(form, table, msg) {
    try {
      const d = await api(auditQuery(form, { limit: "200" }));
      table.replaceChildren(el("thead", {}, el("tr", {}, ...["#", "time (UTC)", "user", "action", "object", "new value", "reason"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...d.entries.map((e) => el("tr", {}, el("td", { text: e.seq }), el("td", { text: e.t_utc }),
          el("td", { text: e.user }), el("td", { text: e.action }), el("td", { text: e.object }),
          el("td", { text: e.new_value === null ? "" : JSON.stringify(e.new_value) }), el("td", { text: e.reason })))));
      msg.textContent = "";
    } catch (err) { say(msg, err); }
  }
  async function exportAudit(form, msg) {
    try {
      const text = await api(auditQuery(form, { format: "csv" }));
      const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: "audit.csv" });
      document.body.append(a); a.click(); a.remove();
    } catch (err) { say(msg, err); }
  }
  // Signatures of a batch record, and the approval dialog: user name and password are typed
  // at the moment of signing (the token is not a signature), with a meaning and a reason.
  async function openSignatures(r, box) {
    const msg = el("p", { class: "error", role: "alert" });
    const list = el("table", { class: "signatures" });
    const show = async () => {
      const sigs = await api(`/runs/${r.id}/signatures`);
      list.replaceChildren(el("thead", {}, el("tr", {}, ...["printed name", "user", "time (UTC)", "meaning", "reason"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...sigs.map((x) => el("tr", {}, el("td", { text: x.printed_name }), el("td", { text: x.user }),
          el("td", { text: x.t_utc }), el("td", { text: x.meaning }), el("td", { text: x.reason })))));
    };
    const form = el("form", { class: "sign", role: "dialog", "aria-label": "sign batch record", onsubmit: async (e) => {
      e.preventDefault();
      const f = new FormData(form);
      try {
        await api(`/runs/${r.id}/approve`, { method: "POST", json: { username: f.get("username"), password: f.get("password"),
          meaning: f.get("meaning"), reason: f.get("reason") } });
        form.reset(); msg.textContent = ""; await show();
      } catch (err) { say(msg, err); }
    } },
    el("label", {}, "User name ", el("input", { name: "username", required: true, autocomplete: "off" })),
    el("label", {}, "Password ", el("input", { name: "password", type: "password", required: true, autocomplete: "off" })),
    el("label", {}, "Meaning ", el("select", { name: "meaning" }, ...["approved", "reviewed", "responsible for"].map((m) => el("option", { value: m, text: m })))),
    el("label", {}, "Reason ", el("input", { name: "reason", required: true })),
    el("button", { type: "submit", text: "Sign", disabled: !can(APPROVE) }), msg);
    box.replaceChildren(el("h3", { text: `Signatures of run ${r.id} (${r.mode})` }), list, form);
    await show().catch((err) => say(msg, err));
  }
  async function openReport(r) {
    const html = await api(`/runs/${r.id}/report`);
    const w = window.open(URL.createObjectURL(new Blob([html], { type: "text/html" })), "_blank");
    if (!w) alert("allow pop-ups to open the report");
  }

  // ------------------------------------------------------------------ go
  if (S.token) start(null).catch(() => logout("log in"));
  let tick = 0;
  setInterval(() => {
    if (S.faceplate) updateFaceplate();
    if (S.view !== "run") return;
    updateRun();
    // a running run's progress (position, remaining time) is read again every few seconds
    if (S.token && S.plant && S.plant.active_run !== null && ++tick % 3 === 0) later("runs", 0);
  }, 1000);
})();
