// a3s-lane dashboard: one small script, no framework, no build step.
// Data comes from the JSON API under ./api and live updates from ./api/events (SSE).
"use strict";

const BASE = document.querySelector('meta[name="base"]').content;
const state = {
  token: sessionStorage.getItem("a3s-lane-token") || "",
  overview: null,
  view: "lanes",
  params: new URLSearchParams(location.search),
  laneRows: new Map(),     // lane id -> row elements of the lanes table
  rates: [],               // [ms, completed] per SSE batch, last 5 minutes
  laneRates: new Map(),    // lane id -> [ms, completed] per SSE batch, last minute
  source: null,
  reloadTimer: null,
};

// The token may come in the fragment (#token=…), printed by `serve`; keep it for the tab.
(function takeTokenFromHash() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    state.token = decodeURIComponent(m[1]);
    sessionStorage.setItem("a3s-lane-token", state.token);
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replaces a node's children, skipping the empty ones.
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function fmtTime(ms) {
  if (!ms) return "–";
  const d = new Date(ms);
  return d.toLocaleTimeString() + (Date.now() - ms > 86400000 ? " " + d.toLocaleDateString() : "");
}
function fmtMs(v) { return v === undefined || v === null ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(0); }

function flash(text, ok) {
  const box = document.getElementById("flash");
  box.textContent = text;
  box.className = "show " + (ok ? "ok" : "error");
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { box.className = ""; box.textContent = ""; }, ok ? 4000 : 10000);
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (options && options.body) headers["Content-Type"] = "application/json";
  const res = await fetch(BASE + path, Object.assign({ headers, credentials: "same-origin" }, options || {}));
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (!res.ok) {
    const msg = body && body.error ? body.error.message : res.status + " " + res.statusText;
    throw new ApiError(res.status, msg);
  }
  return body;
}

async function action(path, body, doneText) {
  try {
    const result = await api(path, { method: "POST", body: body ? JSON.stringify(body) : undefined });
    flash(doneText || "done", true);
    return result;
  } catch (e) {
    flash("refused (" + e.status + "): " + e.message, false);
    return null;
  }
}

// ---------------------------------------------------------------------------------------
// Header: totals, token, live state
// ---------------------------------------------------------------------------------------

function setTotals(t) {
  if (!t) return;
  const set = (id, v) => { if (v !== undefined) document.getElementById(id).textContent = v; };
  set("total-pending", t.pending);
  set("total-delayed", t.delayed);
  set("total-active", t.active);
  set("total-lanes", t.lanes);
  set("total-paused", t.paused_lanes);
}

async function loadOverview() {
  try {
    const o = await api("api/overview");
    state.overview = o;
    setTotals(Object.assign({ lanes: o.lanes, paused_lanes: o.paused_lanes }, o.totals));
    document.getElementById("total-dead").textContent = o.dead_letters + (o.dead_letters_more ? "+" : "");
    const auth = document.getElementById("auth-state");
    if (o.read_only) auth.textContent = "read-only";
    else if (!o.actions_enabled) auth.textContent = "actions off (no token configured)";
    else auth.textContent = o.authorized ? "token accepted" : state.token ? "token wrong" : "no token: view only";
    document.body.classList.toggle("authorized", !!o.authorized);
  } catch (e) {
    flash("cannot load the overview: " + e.message, false);
  }
}

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("token");
  state.token = input.value.trim();
  input.value = "";
  if (state.token) sessionStorage.setItem("a3s-lane-token", state.token);
  else sessionStorage.removeItem("a3s-lane-token");
  loadOverview().then(render);
});

// ---------------------------------------------------------------------------------------
// Live updates
// ---------------------------------------------------------------------------------------

function connect() {
  if (state.source) state.source.close();
  const lanes = [...state.laneRows.keys()].slice(0, 200).join(",");
  const url = BASE + "api/events" + (lanes ? "?lanes=" + encodeURIComponent(lanes) : "");
  const source = new EventSource(url);
  state.source = source;
  const live = document.getElementById("live");
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
  source.addEventListener("stats", (ev) => onMessage(JSON.parse(ev.data)));
  source.addEventListener("batch", (ev) => onMessage(JSON.parse(ev.data)));
}

function onMessage(msg) {
  setTotals(msg.totals);
  for (const [id, lane] of Object.entries(msg.lanes || {})) updateLaneRow(id, lane);
  const now = Date.now();
  let completed = 0;
  for (const c of Object.values(msg.counts || {})) completed += c.completed || 0;
  for (const [lane, c] of Object.entries(msg.counts || {})) {
    if (!state.laneRates.has(lane) && state.laneRates.size > 5000) continue;
    const list = state.laneRates.get(lane) || [];
    list.push([now, c.completed || 0]);
    state.laneRates.set(lane, list);
  }
  state.rates.push([now, completed]);
  state.rates = state.rates.filter(([t]) => now - t < 300000);
  const lastMinute = state.rates.filter(([t]) => now - t < 60000);
  const span = lastMinute.length ? Math.max(1, (now - lastMinute[0][0]) / 1000) : 1;
  document.getElementById("total-rate").textContent =
    (lastMinute.reduce((s, [, n]) => s + n, 0) / span).toFixed(1);
  for (const [lane, list] of state.laneRates) {
    const kept = list.filter(([t]) => now - t < 60000);
    if (kept.length) state.laneRates.set(lane, kept); else state.laneRates.delete(lane);
  }
  for (const [lane, rows] of state.laneRows) showLaneRate(lane, rows);
  // The percentiles and counters of the configured metrics: refreshed a few seconds after
  // events moved them.
  if (state.view === "lanes" && state.overview && state.overview.metrics && completed) scheduleReload(null, 5000);
  if (msg.recent && msg.recent.length) addFeed(msg.recent);
  drawChart();
  if (msg.dead_letters_changed) scheduleReload("dead");
  if (state.view === "commands" || state.view === "groups") {
    const lane = state.params.get("lane");
    if (lane && msg.counts && msg.counts[lane]) scheduleReload();
  }
  if (state.view === "dead-letters" && msg.counts) {
    for (const c of Object.values(msg.counts)) if (c.dead_lettered || c.submitted) { scheduleReload(); break; }
  }
}

// Reloads the current list (or the dead-letter count) once, a moment after events moved it.
function showLaneRate(lane, rows) {
  const list = state.laneRates.get(lane) || [];
  const secs = Math.max(1, (Date.now() - (list.length ? list[0][0] : Date.now())) / 1000);
  rows.rateCell.textContent = list.length ? (list.reduce((s, [, n]) => s + n, 0) / secs).toFixed(1) : "–";
}

function scheduleReload(what, delay) {
  if (what === "dead") {
    clearTimeout(state.deadTimer);
    state.deadTimer = setTimeout(loadOverview, 700);
    return;
  }
  if (state.reloadTimer) return;
  state.reloadTimer = setTimeout(() => { state.reloadTimer = null; render(true); }, delay || 800);
}

function addFeed(events) {
  const feed = document.getElementById("feed");
  if (!feed) return;
  for (const e of events) {
    const line = el("div", {}, fmtTime(e.ts), " ", e.key.replace("queue.", ""), " ",
      e.lane || "", e.command_id !== null ? " #" + e.command_id : "",
      e.command_type ? " " + e.command_type : "", e.duration_ms !== null ? " " + fmtMs(e.duration_ms) + " ms" : "");
    feed.prepend(line);
  }
  while (feed.childNodes.length > 60) feed.lastChild.remove();
}

function drawChart() {
  const canvas = document.getElementById("chart");
  if (!canvas) return;
  const w = canvas.width = canvas.clientWidth || 600;
  const h = canvas.height = canvas.clientHeight || 90;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const now = Date.now();
  // Completions per 5-second bucket over the last 5 minutes.
  const buckets = new Array(60).fill(0);
  for (const [t, n] of state.rates) {
    const i = 59 - Math.floor((now - t) / 5000);
    if (i >= 0 && i < 60) buckets[i] += n;
  }
  const max = Math.max(1, ...buckets);
  ctx.fillStyle = "#4fa3ff";
  const bw = w / 60;
  buckets.forEach((n, i) => {
    const bh = (n / max) * (h - 14);
    ctx.fillRect(i * bw + 1, h - bh, bw - 2, bh);
  });
  ctx.fillStyle = "#8a96a3";
  ctx.font = "11px sans-serif";
  ctx.fillText("completed per 5 s, last 5 min (max " + max + ")", 6, 12);
}

// ---------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------

function pager(offset, limit, hasMore, total) {
  const go = (o) => { state.params.set("offset", Math.max(0, o)); pushParams(); };
  return el("div", { class: "pager" },
    el("button", { onclick: () => go(offset - limit), disabled: offset === 0 }, "‹ prev"),
    el("span", { class: "muted" }, total !== undefined
      ? `${total ? offset + 1 : 0}–${Math.min(offset + limit, total)} of ${total}`
      : `from ${offset + 1}`),
    el("button", { onclick: () => go(offset + limit), disabled: !hasMore }, "next ›"));
}

function pushParams() {
  history.pushState(null, "", BASE + state.view + "?" + state.params.toString());
  render();
}

function badges(x) {
  return [x.paused ? el("span", { class: "badge paused" }, "paused") : null,
    x.throttled ? el("span", { class: "badge throttled" }, "rate-limited") : null,
    !x.paused && !x.throttled && x.active ? el("span", { class: "badge running" }, "running") : null];
}

function updateLaneRow(id, lane) {
  const rows = state.laneRows.get(id);
  if (!rows) return;
  rows.pending.textContent = lane.pending;
  rows.delayed.textContent = lane.delayed;
  rows.active.textContent = lane.active;
  rows.prio.textContent = lane.effective_priority === lane.priority
    ? lane.priority : `${lane.priority} → ${lane.effective_priority}`;
  rows.state.replaceChildren(...badges(lane).filter(Boolean));
  rows.pauseBtn.disabled = lane.paused;
  rows.resumeBtn.disabled = !lane.paused;
}

async function renderLanes(view) {
  const p = state.params;
  const offset = +(p.get("offset") || 0), limit = +(p.get("limit") || 50);
  const q = p.get("q") || "", sort = p.get("sort") || "id";
  const data = await api(`api/lanes?offset=${offset}&limit=${limit}&sort=${encodeURIComponent(sort)}` +
    (q ? "&q=" + encodeURIComponent(q) : ""));
  const metrics = state.overview && state.overview.metrics;
  const search = el("input", { placeholder: "filter lanes", value: q });
  search.addEventListener("change", () => { p.set("q", search.value); p.delete("offset"); pushParams(); });
  const sortSel = el("select", { onchange: (e) => { p.set("sort", e.target.value); pushParams(); } },
    ["id", "priority", "pending", "active"].map((s) => el("option", { value: s, selected: s === sort }, "sort: " + s)));
  const seconds = el("input", { id: "pause-seconds", type: "number", min: "1", value: state.pauseSeconds || "30", class: "small", "aria-label": "pause seconds" });
  seconds.addEventListener("change", () => { state.pauseSeconds = seconds.value; });
  state.laneRows = new Map();
  const head = el("tr", {}, el("th", {}, "lane"), el("th", { class: "n" }, "priority"),
    el("th", { class: "n" }, "pending"), el("th", { class: "n" }, "delayed"),
    el("th", { class: "n" }, "running"), el("th", { class: "n" }, "max"),
    el("th", {}, "state"), el("th", { class: "n" }, "done/s (1 min)"),
    metrics ? [el("th", { class: "n" }, "wait p50/p90/p99 ms"), el("th", { class: "n" }, "run p50/p90/p99 ms"), el("th", { class: "n" }, "completed / failed / dead")] : null,
    el("th", {}, "actions"));
  const body = data.lanes.map((lane) => {
    const r = {
      prio: el("td", { class: "n" }), pending: el("td", { class: "n pending" }),
      delayed: el("td", { class: "n delayed" }), active: el("td", { class: "n active" }),
      state: el("td", { class: "state" }), rateCell: el("td", { class: "n rate" }, "–"),
    };
    const act = (verb) => async () => {
      const path = `api/lanes/${encodeURIComponent(lane.id)}/${verb}`;
      const ok = verb === "pause-for"
        ? await action(path, { seconds: +seconds.value || 30 }, `lane ${lane.id} paused for ${seconds.value || 30} s`)
        : await action(path, null, `lane ${lane.id} ${verb === "pause" ? "paused" : "resumed"}`);
      if (ok) render(true);
    };
    r.pauseBtn = el("button", { "data-action": "pause", onclick: act("pause") }, "Pause");
    r.resumeBtn = el("button", { "data-action": "resume", onclick: act("resume") }, "Resume");
    const m = lane.metrics;
    const pct = (h) => h ? `${fmtMs(h.percentiles.p50)} / ${fmtMs(h.percentiles.p90)} / ${fmtMs(h.percentiles.p99)}` : "–";
    const row = el("tr", { dataset: { lane: lane.id } },
      el("td", {}, el("a", { href: `${BASE}commands?lane=${encodeURIComponent(lane.id)}` }, lane.id)),
      r.prio, r.pending, r.delayed, r.active,
      el("td", { class: "n" }, lane.min ? `${lane.max} (min ${lane.min})` : lane.max),
      r.state, r.rateCell,
      metrics ? [el("td", { class: "n" }, pct(m && m.wait_ms)), el("td", { class: "n" }, pct(m && m.run_ms)),
        el("td", { class: "n" }, m ? `${m.completed} / ${m.failed + m.timed_out} / ${m.dead_lettered}` : "–")] : null,
      el("td", {}, r.pauseBtn, " ", r.resumeBtn, " ",
        el("button", { "data-action": "pause-for", onclick: act("pause-for") }, "Pause for s"), " ",
        el("a", { href: `${BASE}groups?lane=${encodeURIComponent(lane.id)}` }, "groups")));
    state.laneRows.set(lane.id, r);
    updateLaneRow(lane.id, lane);
    showLaneRate(lane.id, r);
    return row;
  });
  fill(view, 
    el("div", { class: "grid2" },
      el("div", { class: "panel" }, el("canvas", { id: "chart" })),
      el("div", { class: "panel" }, el("div", { class: "label" }, "recent events"), el("div", { id: "feed", class: "feed" }))),
    el("div", { class: "toolbar" }, search, sortSel, el("span", { class: "grow" }),
      el("label", { class: "muted" }, "pause for ", seconds, " s")),
    el("table", { id: "lanes" }, el("thead", {}, head), el("tbody", {}, body)),
    pager(offset, limit, offset + limit < data.total, data.total),
    metrics ? null : el("p", { class: "muted" },
      "Wait and run percentiles need the queue's QueueMetrics (DashboardConfig::with_metrics); throughput here counts completions seen live since this page opened."));
  drawChart();
}

function detailPanel(title, obj) {
  return el("div", { class: "panel", id: "detail" }, el("div", { class: "label" }, title),
    el("pre", {}, JSON.stringify(obj, null, 2)));
}

async function showCommand(id, into) {
  try {
    const c = await api("api/commands/" + encodeURIComponent(id));
    const note = c.result_hidden || c.payload_hidden ? " (result / payload hidden: enter the token)" : "";
    into.replaceChildren(detailPanel(`command ${c.id}${note}`, c));
  } catch (e) {
    into.replaceChildren(el("div", { class: "panel err" }, `command ${id}: ${e.message}`));
  }
}

async function renderCommands(view) {
  const p = state.params;
  const lane = p.get("lane") || "";
  const st = p.get("state") || "pending";
  const offset = +(p.get("offset") || 0), limit = +(p.get("limit") || 50);
  const detail = detailHolder();
  const laneIn = el("input", { id: "cmd-lane", placeholder: "lane", value: lane, list: "lane-list" });
  const lanesList = el("datalist", { id: "lane-list" });
  api("api/lanes?limit=200").then((d) => lanesList.replaceChildren(...d.lanes.map((l) => el("option", { value: l.id }))), () => {});
  const stateSel = el("select", { id: "cmd-state" },
    ["pending", "delayed", "running", "completed", "failed", "cancelled", "dead_lettered", "expired"]
      .map((s) => el("option", { value: s, selected: s === st }, s)));
  const apply = () => { p.set("lane", laneIn.value.trim()); p.set("state", stateSel.value); p.delete("offset"); pushParams(); };
  laneIn.addEventListener("change", apply);
  stateSel.addEventListener("change", apply);
  const idIn = el("input", { id: "cmd-id", placeholder: "command id" });
  const find = el("form", { onsubmit: (e) => { e.preventDefault(); if (idIn.value.trim()) showCommand(idIn.value.trim(), detail); } },
    idIn, " ", el("button", { type: "submit" }, "Find"));
  const parts = [el("div", { class: "toolbar" }, laneIn, lanesList, stateSel, el("span", { class: "grow" }), find), detail];
  if (!lane) {
    parts.push(el("p", { class: "muted" }, "Choose a lane to list its commands, or find one by id."));
    fill(view, ...parts);
    return;
  }
  const data = await api(`api/lanes/${encodeURIComponent(lane)}/commands?state=${st}&offset=${offset}&limit=${limit}`);
  const live = ["pending", "delayed", "running"].includes(st);
  const rows = data.commands.map((c) => el("tr", { dataset: { id: c.id } },
    el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); showCommand(c.id, detail); } }, c.id)),
    el("td", {}, c.command_type), el("td", {}, c.state), el("td", { class: "n" }, c.attempts),
    el("td", {}, fmtTime(c.submitted_at_ms)), el("td", {}, fmtTime(c.started_at_ms)), el("td", {}, fmtTime(c.finished_at_ms)),
    el("td", { class: "err" }, c.error ? c.error.message || JSON.stringify(c.error) : ""),
    el("td", {}, live ? el("button", { class: "danger", "data-action": "cancel", onclick: async () => {
      if (await action(`api/commands/${c.id}/cancel`, null, `command ${c.id} cancelled`)) render(true);
    } }, "Cancel") : "")));
  parts.push(el("table", { id: "commands" },
    el("thead", {}, el("tr", {}, ["id", "type", "state", "attempts", "submitted", "started", "finished", "error", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows)),
  data.commands.length ? null : el("p", { class: "muted" }, `No ${st} command in lane ${lane}.`),
  pager(offset, limit, data.has_more));
  fill(view, ...parts);
}

async function renderDeadLetters(view) {
  const p = state.params;
  const offset = +(p.get("offset") || 0), limit = +(p.get("limit") || 50);
  const lane = p.get("lane") || "";
  const data = await api(`api/dead-letters?offset=${offset}&limit=${limit}` + (lane ? "&lane=" + encodeURIComponent(lane) : ""));
  const detail = detailHolder();
  const laneIn = el("input", { placeholder: "lane filter", value: lane });
  laneIn.addEventListener("change", () => { p.set("lane", laneIn.value.trim()); p.delete("offset"); pushParams(); });
  const rows = data.dead_letters.map((d) => el("tr", { dataset: { id: d.command_id } },
    el("td", {}, d.command_id), el("td", {}, d.lane_id), el("td", {}, d.command_type),
    el("td", { class: "n" }, d.attempts), el("td", {}, fmtTime(d.failed_at)), el("td", { class: "err" }, d.error),
    el("td", {}, el("button", { onclick: () => {
      detail.replaceChildren(detailPanel(`payload of ${d.command_id}` + (d.payload_hidden ? " (hidden: enter the token)" : ""),
        d.payload_hidden ? "hidden" : d.payload));
    } }, "Payload"), " ",
    el("button", { "data-action": "redrive", disabled: !d.replayable, onclick: async () => {
      const r = await action(`api/dead-letters/${d.command_id}/redrive`, null, `dead letter ${d.command_id} re-driven`);
      if (r) { flash(`dead letter ${d.command_id} re-driven as command ${r.new_id}`, true); render(true); loadOverview(); }
    } }, "Redrive"), " ",
    el("button", { class: "danger", "data-action": "delete", onclick: async () => {
      if (await action(`api/dead-letters/${d.command_id}/delete`, null, `dead letter ${d.command_id} deleted`)) { render(true); loadOverview(); }
    } }, "Delete"))));
  const all = (verb, text) => async () => {
    if (!confirm(text)) return;
    const r = await action(`api/dead-letters/${verb}`, null, "done");
    if (r) { flash(verb === "purge" ? `${r.purged} dead letters deleted` : `${r.redriven} dead letters re-driven`, true); render(true); loadOverview(); }
  };
  fill(view, 
    el("div", { class: "toolbar" }, laneIn, el("span", { class: "grow" }),
      el("button", { "data-action": "redrive-all", onclick: all("redrive-all", "Re-drive every dead letter?") }, "Redrive all"),
      el("button", { class: "danger", "data-action": "purge", onclick: all("purge", "Delete every dead letter?") }, "Delete all")),
    detail,
    el("table", { id: "dead-letters" },
      el("thead", {}, el("tr", {}, ["id", "lane", "type", "attempts", "failed", "error", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)),
    data.dead_letters.length ? null : el("p", { class: "muted" }, "No dead letter."),
    pager(offset, limit, data.has_more));
}

async function renderGroups(view) {
  const p = state.params;
  const lane = p.get("lane") || "";
  const offset = +(p.get("offset") || 0), limit = +(p.get("limit") || 50);
  const laneIn = el("input", { placeholder: "lane", value: lane });
  laneIn.addEventListener("change", () => { p.set("lane", laneIn.value.trim()); p.delete("offset"); pushParams(); });
  const parts = [el("div", { class: "toolbar" }, laneIn)];
  if (!lane) {
    parts.push(el("p", { class: "muted" }, "Choose a lane to list its groups (those with commands waiting or running, or paused)."));
    fill(view, ...parts);
    return;
  }
  const data = await api(`api/lanes/${encodeURIComponent(lane)}/groups?offset=${offset}&limit=${limit}`);
  const rows = data.groups.map((g) => {
    const act = (verb) => async () => {
      if (await action(`api/lanes/${encodeURIComponent(lane)}/groups/${encodeURIComponent(g.group)}/${verb}`, null, `group ${g.group} ${verb}d`)) render(true);
    };
    return el("tr", { dataset: { group: g.group } }, el("td", {}, g.group), el("td", { class: "n" }, g.pending),
      el("td", { class: "n" }, g.active), el("td", { class: "n" }, g.max_concurrency ?? "–"), el("td", {}, badges(g)),
      el("td", {}, el("button", { onclick: act("pause"), disabled: g.paused }, "Pause"), " ",
        el("button", { onclick: act("resume"), disabled: !g.paused }, "Resume")));
  });
  parts.push(el("table", { id: "groups" },
    el("thead", {}, el("tr", {}, ["group", "pending", "running", "max", "state", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows)),
  data.groups.length ? null : el("p", { class: "muted" }, `No active group in lane ${lane}.`),
  pager(offset, limit, data.has_more));
  fill(view, ...parts);
}

async function renderSchedules(view) {
  const p = state.params;
  const offset = +(p.get("offset") || 0), limit = +(p.get("limit") || 50);
  const data = await api(`api/schedules?offset=${offset}&limit=${limit}`);
  const detail = detailHolder();
  const rows = data.schedules.map((info) => {
    const s = info.schedule;
    const act = (verb) => async () => {
      if (await action(`api/schedules/${encodeURIComponent(s.name)}/${verb}`, null, `schedule ${s.name} ${verb}d`)) render(true);
    };
    return el("tr", { dataset: { schedule: s.name } }, el("td", {}, s.name), el("td", {}, s.lane), el("td", {}, s.command_type),
      el("td", {}, JSON.stringify(s.every)), el("td", {}, fmtTime(info.next_fire_at_ms)), el("td", {}, fmtTime(info.last_fired_at_ms)),
      el("td", { class: "n" }, info.fired), el("td", { class: "n" }, info.skipped),
      el("td", {}, info.paused ? el("span", { class: "badge paused" }, "paused") : ""),
      el("td", {}, el("button", { onclick: () => fill(detail, detailPanel(`schedule ${s.name}` + (s.payload_hidden ? " (payload hidden: enter the token)" : ""), info)) }, "Details"), " ",
        el("button", { onclick: act("pause"), disabled: info.paused }, "Pause"), " ",
        el("button", { onclick: act("resume"), disabled: !info.paused }, "Resume")));
  });
  fill(view, detail,
    el("table", { id: "schedules" },
      el("thead", {}, el("tr", {}, ["name", "lane", "type", "every", "next", "last fired", "fired", "skipped", "state", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)),
    data.schedules.length ? null : el("p", { class: "muted" }, "No recurring schedule."),
    pager(offset, limit, offset + limit < data.total, data.total));
}

// The detail panel of a list survives the list's live refreshes (not a change of page).
function detailHolder() {
  if (!state.detail) state.detail = el("div", {});
  return state.detail;
}

async function render(quiet) {
  const path = location.pathname.slice(BASE.length).replace(/\/$/, "");
  const previous = state.view;
  state.view = ["commands", "dead-letters", "groups", "schedules"].includes(path) ? path : "lanes";
  if (!quiet || previous !== state.view) state.detail = null;
  state.params = new URLSearchParams(location.search);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === state.view);
  const view = document.getElementById("view");
  const lanesBefore = [...state.laneRows.keys()].join(",");
  try {
    if (state.view === "lanes") await renderLanes(view);
    else { state.laneRows = new Map(); }
    if (state.view === "commands") await renderCommands(view);
    if (state.view === "dead-letters") await renderDeadLetters(view);
    if (state.view === "groups") await renderGroups(view);
    if (state.view === "schedules") await renderSchedules(view);
  } catch (e) {
    if (!quiet) fill(view, el("div", { class: "panel err" }, "Error: " + e.message));
    else flash(e.message, false);
  }
  // Watch the lanes on screen.
  if ([...state.laneRows.keys()].join(",") !== lanesBefore || !state.source) connect();
}

window.addEventListener("popstate", () => render());
document.addEventListener("click", (e) => {
  const a = e.target.closest("a[href]");
  if (!a || a.target || e.ctrlKey || e.metaKey) return;
  const href = a.getAttribute("href");
  if (href.startsWith(BASE) && !href.startsWith(BASE + "metrics") && !href.startsWith("#")) {
    e.preventDefault();
    history.pushState(null, "", href);
    render();
  }
});
loadOverview().then(() => render());
