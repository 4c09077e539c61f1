// netconn's page: the records of each interval, as the daemon streams them
// (/events, Server-Sent Events), drawn as tables and charts. Every text from
// the daemon goes in through textContent, never as markup.
"use strict";

const TYPES = ["tcp", "tcp6", "udp", "udp6"];
const STATES = ["ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
  "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NONE"];
const KEPT = 600;

const app = {
  frame: null,      // {counts: [records], host, conntrack}
  before: null,
  history: new Map(), // netns -> [{t, total, established, opened, closed, failed, resets, retrans, p50, p99}]
  shown: null,      // the netns the overview shows
  view: "overview",
  connections: [],
  sort: { key: "proto", down: false },
};

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function ownerLabel(r) {
  if (r.namespace === "system") return "host";
  const o = r.owner || {};
  if (o.k8s_pod_name) return o.k8s_namespace ? `pod:${o.k8s_namespace}/${o.k8s_pod_name}` : `pod:${o.k8s_pod_name}`;
  if (o.runtime && o.container_id) return `${o.runtime}:${o.container_id.slice(0, 12)}`;
  if (o.netns_name) return `netns:${o.netns_name}`;
  if (o.pids && o.pids.length && o.comm && o.comm.length) return `${o.pids[0]}/${o.comm[0]}`;
  return "-";
}

function recordOf(frame, netns) {
  return frame ? frame.counts.find((r) => r.netns === netns) : undefined;
}

function sum(obj) {
  return obj ? Object.values(obj).reduce((a, b) => a + (typeof b === "number" ? b : 0), 0) : 0;
}

function onRecords(text) {
  const frame = { counts: [], host: null, conntrack: null };
  for (const line of text.split("\n")) {
    if (!line) continue;
    let r;
    try { r = JSON.parse(line); } catch (e) { continue; }
    if (r.type === "counts") frame.counts.push(r);
    else if (r.type === "host") frame.host = r;
    else if (r.type === "conntrack") frame.conntrack = r;
  }
  if (!frame.counts.length) return;
  for (const r of frame.counts) {
    const h = app.history.get(r.netns) || [];
    const t = Date.parse(r.time) / 1000;
    const last = h[h.length - 1];
    if (last && last.t === t) continue;
    const span = last ? t - last.t : null;
    const m = r.tcp_metrics || {};
    const rate = (v) => (span && span > 0 && typeof v === "number" ? v / span : null);
    h.push({
      t,
      total: r.total,
      established: (r.connections.tcp || {}).ESTABLISHED + (r.connections.tcp6 || {}).ESTABLISHED,
      opened: rate(typeof m.accepted === "number" && typeof m.connected === "number" ? m.accepted + m.connected : undefined),
      closed: rate(m.closed),
      failed: rate(m.failed_connects ? sum(m.failed_connects) : undefined),
      resets: rate(m.resets_sent !== undefined ? m.resets_sent + m.resets_received : undefined),
      retrans: rate(m.retrans),
      p50: m.rtt_us && m.rtt_us.p50 != null ? m.rtt_us.p50 / 1000 : null,
      p99: m.rtt_us && m.rtt_us.p99 != null ? m.rtt_us.p99 / 1000 : null,
    });
    while (h.length > KEPT) h.shift();
    app.history.set(r.netns, h);
  }
  if (app.frame && app.frame.counts[0] && frame.counts[0].time === app.frame.counts[0].time) {
    app.frame = frame; // the same interval again (the counts answer, then its records)
  } else {
    app.before = app.frame;
    app.frame = frame;
  }
  if (app.shown === null || !recordOf(frame, app.shown)) {
    const host = frame.counts.find((r) => r.namespace === "system");
    app.shown = (host || frame.counts[0]).netns;
  }
  render();
}

function render() {
  const f = app.frame;
  if (!f) return;
  const r = recordOf(f, app.shown);
  const node = f.host !== null || f.counts.length > 1;
  $("namespaces-tab").hidden = !node;
  $("where").textContent = `${f.counts[0].host} · ${f.host ? f.host.time : r.time} · ` +
    (node ? `${f.counts.length} namespaces` : `netns ${r.netns}`) + ` · source ${r.source}`;
  renderStates(r, recordOf(app.before, app.shown));
  renderCharts();
  renderListeners(r);
  renderMetrics(r);
  if (node) renderNamespaces();
}

function renderStates(r, before) {
  $("states-title").textContent = `Connections by state · netns ${r.netns}` +
    (r.owner ? ` · ${ownerLabel(r)}` : "");
  const body = $("states").tBodies[0];
  body.replaceChildren();
  for (const state of STATES) {
    const tr = el("tr");
    tr.appendChild(el("th", state));
    for (const ct of TYPES) {
      const now = (r.connections[ct] || {})[state];
      const td = el("td");
      td.dataset.connType = ct;
      if (now === undefined) {
        td.textContent = "-";
      } else {
        td.appendChild(el("span", now, "figure"));
        const was = before ? (before.connections[ct] || {})[state] : undefined;
        if (was !== undefined && was !== now) {
          const d = now - was;
          td.appendChild(el("small", d > 0 ? `+${d}` : `${d}`, d > 0 ? "up" : "down"));
        }
      }
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  $("total").textContent = r.total;
}

function renderListeners(r) {
  const body = $("listeners").tBodies[0];
  body.replaceChildren();
  for (const l of r.listeners || []) {
    // A backlog of 0 still takes one connection (as `netconn top` reads it).
    const fill = Math.round((100 * l.accept_queue) / Math.max(l.backlog, 1));
    const tr = el("tr");
    tr.appendChild(el("td", `${l.addr}:${l.port}`));
    tr.appendChild(el("td", l.pid != null ? `${l.pid}/${l.comm}` : "-"));
    tr.appendChild(el("td", `${l.accept_queue}/${l.backlog}`));
    tr.appendChild(el("td", `${fill}%`, fill >= 90 ? "down" : ""));
    tr.appendChild(el("td", l.syn_backlog));
    tr.appendChild(el("td", l.drops));
    body.appendChild(tr);
  }
  if (!r.listeners) {
    const tr = el("tr");
    const td = el("td", "not in this record (polling, or the counts answer before the first interval)");
    td.colSpan = 6;
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

function renderMetrics(r) {
  const dl = $("metrics");
  dl.replaceChildren();
  const m = r.tcp_metrics;
  if (!m) {
    dl.appendChild(el("dt", "none"));
    dl.appendChild(el("dd", "polling, or --no-tcp-metrics"));
    return;
  }
  const ms = (v) => (v == null ? "-" : `${(v / 1000).toFixed(2)} ms`);
  const rows = [
    ["RTT p50 / p99 / max", `${ms(m.rtt_us.p50)} / ${ms(m.rtt_us.p99)} / ${ms(m.rtt_us.max)} (${m.rtt_us.count} samples)`],
    ["accepted / connected / closed", `${m.accepted} / ${m.connected} / ${m.closed}`],
    ["failed connects", m.failed_connects ? sum(m.failed_connects) : 0],
    ["retransmitted segments", m.retrans],
    ["resets sent / received", `${m.resets_sent} / ${m.resets_received}`],
    ["listen overflows / drops", `${m.listen_overflows} / ${m.listen_drops}`],
  ];
  for (const [k, v] of rows) {
    dl.appendChild(el("dt", k));
    dl.appendChild(el("dd", v));
  }
}

function onAlerts(text) {
  const alerts = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    try { alerts.push(JSON.parse(line)); } catch (e) { /* a partial line */ }
  }
  alerts.sort((a, b) => (a.time < b.time ? 1 : -1));
  const ul = $("alerts");
  ul.replaceChildren();
  if (!alerts.length) ul.appendChild(el("li", "none"));
  const apart = new Set(["type", "alert", "status", "time", "host", "netns", "owner", "since"]);
  for (const a of alerts) {
    const detail = Object.entries(a)
      .filter(([k, v]) => !apart.has(k) && v !== null)
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(" ");
    ul.appendChild(el("li", `${String(a.status).toUpperCase()} ${a.alert} ${a.time} netns ${a.netns} ${detail}`, a.status));
  }
}

// A line chart of the last points of a namespace; `series`: [name, pick, colour].
function chart(canvas, series) {
  const h = app.history.get(app.shown) || [];
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, left = 50, bottom = 18, top = 16;
  ctx.clearRect(0, 0, W, H);
  const fg = getComputedStyle(document.body).color;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = fg;
  ctx.strokeStyle = fg;
  const points = h.slice(-120);
  let max = 0;
  for (const [, pick] of series) for (const p of points) { const v = pick(p); if (v != null && v > max) max = v; }
  max = max > 0 ? max * 1.1 : 1;
  ctx.globalAlpha = 0.3;
  ctx.beginPath(); ctx.moveTo(left, top); ctx.lineTo(left, H - bottom); ctx.lineTo(W, H - bottom); ctx.stroke();
  ctx.globalAlpha = 1;
  ctx.fillText(max >= 10 ? Math.round(max) : max.toFixed(2), 2, top + 4);
  ctx.fillText("0", 2, H - bottom);
  if (points.length) {
    const secs = Math.round(points[points.length - 1].t - points[0].t);
    ctx.fillText(`last ${secs} s`, left + 4, H - 4);
  }
  let lx = left + 80;
  for (const [name, pick, colour] of series) {
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    points.forEach((p, i) => {
      const v = pick(p);
      if (v == null) return;
      const x = left + ((W - left - 4) * i) / Math.max(points.length - 1, 1);
      const y = H - bottom - ((H - bottom - top) * v) / max;
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    });
    ctx.stroke();
    const last = points.length ? pick(points[points.length - 1]) : null;
    const label = `${name} ${last == null ? "-" : (Number.isInteger(last) ? last : last.toFixed(1))}`;
    ctx.fillText(label, lx, 11);
    lx += ctx.measureText(label).width + 16;
  }
  ctx.lineWidth = 1;
}

function renderCharts() {
  chart($("chart-counts"), [
    ["connections", (p) => p.total, "#3b7dd8"],
    ["established", (p) => p.established, "#2a8a3a"],
  ]);
  chart($("chart-rates"), [
    ["opened/s", (p) => p.opened, "#3b7dd8"],
    ["closed/s", (p) => p.closed, "#2a8a3a"],
    ["failed/s", (p) => p.failed, "#c0392b"],
    ["resets/s", (p) => p.resets, "#b7791f"],
    ["retrans/s", (p) => p.retrans, "#8e44ad"],
  ]);
  chart($("chart-rtt"), [
    ["p50", (p) => p.p50, "#2a8a3a"],
    ["p99", (p) => p.p99, "#c0392b"],
  ]);
}

function renderNamespaces() {
  const f = app.frame;
  const rows = f.counts.map((r) => {
    const was = recordOf(app.before, r.netns);
    const tcp = (s) => ((r.connections.tcp || {})[s] || 0) + ((r.connections.tcp6 || {})[s] || 0);
    return { r, change: was ? r.total - was.total : 0, est: tcp("ESTABLISHED"), listen: tcp("LISTEN") };
  });
  rows.sort((a, b) => b.r.total - a.r.total || a.r.netns - b.r.netns);
  const body = $("ns").tBodies[0];
  body.replaceChildren();
  for (const row of rows) {
    const tr = el("tr", undefined, row.r.netns === app.shown ? "shown" : "");
    tr.dataset.netns = row.r.netns;
    for (const v of [row.r.netns, ownerLabel(row.r), row.r.total,
      row.change ? (row.change > 0 ? `+${row.change}` : row.change) : "", row.est, row.listen]) {
      tr.appendChild(el("td", v));
    }
    tr.addEventListener("click", () => { app.shown = row.r.netns; show("overview"); render(); });
    body.appendChild(tr);
  }
}

function connectionRows() {
  return app.connections.map((c) => ({
    proto: c.proto || "", state: c.state || "",
    local: `${c.laddr}:${c.lport}`, remote: `${c.raddr}:${c.rport}`,
    direction: c.direction || "", process: c.pid != null ? `${c.pid}/${c.comm}` : "-",
    rtt: c.rtt_us != null ? c.rtt_us / 1000 : null, retrans: c.retrans,
    sent: c.bytes_sent, received: c.bytes_received,
    age: c.age_ms != null ? c.age_ms / 1000 : null,
  }));
}

function renderConnections() {
  const needle = $("filter").value.toLowerCase();
  const keys = ["proto", "state", "local", "remote", "direction", "process", "rtt", "retrans", "sent", "received", "age"];
  let rows = connectionRows().filter((r) => !needle || keys.some((k) => String(r[k] ?? "").toLowerCase().includes(needle)));
  const { key, down } = app.sort;
  rows.sort((a, b) => {
    const x = a[key], y = b[key];
    const o = typeof x === "number" && typeof y === "number" ? x - y : String(x ?? "").localeCompare(String(y ?? ""));
    return down ? -o : o;
  });
  $("connections-title").textContent = `Connections · ${rows.length} shown of ${app.connections.length} · sorted by ${key}${down ? " ↓" : " ↑"}`;
  const body = $("conns").tBodies[0];
  body.replaceChildren();
  for (const r of rows.slice(0, 2000)) {
    const tr = el("tr");
    for (const k of keys) tr.appendChild(el("td", r[k] == null ? "-" : (k === "rtt" ? r[k].toFixed(3) : k === "age" ? r[k].toFixed(1) : r[k])));
    body.appendChild(tr);
  }
}

async function fetchConnections() {
  try {
    const answer = await fetch("connections", { cache: "no-store" });
    if (answer.ok) {
      app.connections = await answer.json();
      renderConnections();
    } else {
      $("connections-title").textContent = `Connections: ${await answer.text()}`;
    }
  } catch (e) { /* the daemon is away: the status says so */ }
}

let connectionsTimer = null;
function show(view) {
  app.view = view;
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("on", b.dataset.view === view);
  for (const s of ["overview", "connections", "namespaces"]) $(s).hidden = s !== view;
  clearInterval(connectionsTimer);
  if (view === "connections") {
    fetchConnections();
    connectionsTimer = setInterval(fetchConnections, 5000);
  }
  if (view === "overview") renderCharts();
}

for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.view));
$("filter").addEventListener("input", renderConnections);
for (const th of document.querySelectorAll("#conns th[data-key]")) {
  th.addEventListener("click", () => {
    const key = th.dataset.key;
    app.sort = { key, down: app.sort.key === key ? !app.sort.down : false };
    renderConnections();
  });
}

// Live: the browser reconnects by itself when the daemon restarts; when it
// gives up (an answer other than a stream: the daemon's streams all taken),
// a new one after a few seconds.
function connect() {
  const events = new EventSource("events");
  events.addEventListener("records", (e) => onRecords(e.data));
  events.addEventListener("alerts", (e) => onAlerts(e.data));
  events.onopen = () => { $("status").textContent = "live"; $("status").className = "status live"; };
  events.onerror = () => {
    $("status").textContent = "reconnecting…";
    $("status").className = "status down";
    if (events.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
  };
}
connect();
