// reqbus live dashboard. Everything shown comes from the node's live stream (/api/stream,
// Server-Sent Events, one snapshot per second); nothing polls the database. Every value that
// comes from a request field is inserted with textContent, never as HTML.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  let node = params.get("node") || "";
  let source = null;
  let chart = null;

  const fmt = (n) => (n === undefined || n === null) ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });

  function row(table, cells, cls) {
    const tr = document.createElement("tr");
    if (cls) tr.className = cls;
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      td.textContent = String(c);
      if (i > 0 && typeof c === "number") td.className = "n";
      if (i === 0) td.title = String(c);
      tr.appendChild(td);
    });
    table.appendChild(tr);
  }
  function fill(id, rows, map) {
    const table = $(id);
    table.replaceChildren();
    if (!rows || rows.length === 0) { row(table, ["(none yet)"]); return; }
    rows.forEach((r) => map(table, r));
  }

  // x-axis labels: HH:MM:SS (local time) at every tick, and ticks at least 70 px apart, so
  // labels about 50 px wide never overlap at any chart width (uPlot's default time format has
  // an am/pm suffix and a 50 px minimum spacing). uPlot draws them on the canvas: text only.
  const pad2 = (n) => String(n).padStart(2, "0");
  const hms = (unixSeconds) => {
    const d = new Date(unixSeconds * 1000);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  };
  const clockLabels = (u, splits) => splits.map(hms);

  function makeChart() {
    const el = $("chart");
    const opts = {
      width: Math.max(300, el.clientWidth - 10), height: 240,
      scales: { x: { time: true } },
      series: [ {}, { label: "requests/s", stroke: "#5aa9ff", fill: "rgba(90,169,255,0.15)" },
                { label: "4xx/s", stroke: "#ffc861" }, { label: "5xx/s", stroke: "#ff6b6b" } ],
      axes: [ { stroke: "#8a96ad", grid: { stroke: "#222b40" }, space: 70, values: clockLabels },
              { stroke: "#8a96ad", grid: { stroke: "#222b40" } } ],
    };
    chart = new uPlot(opts, [[], [], [], []], el);
    window.addEventListener("resize", () => chart.setSize({ width: Math.max(300, el.clientWidth - 10), height: 240 }));
  }

  // This node's tcp peers and publish_to endpoints that are not connected, one line each: while
  // one is down the cluster view lacks what comes through it. Hidden when all are up.
  function renderLinks(s) {
    const box = $("links");
    const down = [];
    const add = (list, noun) => (list || []).forEach((p) => { if (!p.connected) down.push([noun, p]); });
    add(s.peers, "peer");
    add(s.uplinks, "publish_to");
    box.replaceChildren();
    box.hidden = down.length === 0;
    down.forEach(([noun, p]) => {
      let text = `${noun} ${p.endpoint} not connected since ${hms(p.since)}`;
      if (p.connect_failures > 0)
        text += ` (${fmt(p.connect_failures)} failed attempt${p.connect_failures === 1 ? "" : "s"}, last: ${p.last_failure})`;
      else if (p.last_failure) text += ` (${p.last_failure})`;
      if (p.events_unsent > 0) text += `; ${fmt(p.events_unsent)} events not sent to it`;
      const line = document.createElement("div");
      line.textContent = text;
      line.title = text;
      box.appendChild(line);
    });
  }

  function render(s) {
    renderLinks(s);
    const series = s.series || [];
    const xs = [], total = [], e4 = [], e5 = [];
    series.forEach((p) => { xs.push(p[0]); total.push(p[1]); e4.push(p[2]); e5.push(p[3]); });
    chart.setData([xs, total, e4, e5]);
    const last10 = total.slice(-11, -1);
    $("rps").textContent = fmt(last10.reduce((a, b) => a + b, 0) / Math.max(1, last10.length));
    $("total").textContent = fmt(s.total);
    const l = s.latency_ms || {};
    $("latency").textContent = `${fmt(l.p50)} / ${fmt(l.p95)} / ${fmt(l.p99)} ms`;
    $("visitors").textContent = fmt(s.visitors_active);
    $("bots").textContent = `${fmt(s.bots)} / ${fmt(s.humans)}`;
    $("dropped").textContent = fmt(s.dropped);
    $("node-name").textContent = s.self ? `— node ${s.self}` : "";
    const status = Object.entries(s.status || {}).sort((a, b) => b[1] - a[1]);
    fill("status", status, (t, r) => row(t, [r[0], r[1]], r[0] >= "500" ? "s5" : r[0] >= "400" ? "s4" : ""));
    fill("top-paths", s.top_paths, (t, r) => row(t, [r[0], r[1]]));
    fill("top-referers", s.top_referers, (t, r) => row(t, [r[0], r[1]]));
    fill("devices", Object.entries(s.devices || {}).sort((a, b) => b[1] - a[1]), (t, r) => row(t, [r[0], r[1]]));
    fill("not-found", s.not_found, (t, r) => row(t, [r[0], r[1]]));
    fill("slowest", s.slowest, (t, r) => row(t, [r[0], Math.round(r[1] * 10) / 10]));
    fill("recent", s.recent, (t, r) => row(t, [`${r.method} ${r.path}`, r.status_code, r.user_agent], r.status_code >= 500 ? "s5" : r.status_code >= 400 ? "s4" : ""));
    const select = $("node-filter");
    (s.nodes || []).forEach((n) => {
      if (![...select.options].some((o) => o.value === n)) {
        const o = document.createElement("option");
        o.value = n; o.textContent = n; select.appendChild(o);
      }
    });
    select.value = node;
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }

  function connect() {
    if (source) source.close();
    const q = new URLSearchParams();
    if (node) q.set("node", node);
    if (token) q.set("token", token);
    source = new EventSource("/api/stream?" + q.toString());
    source.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn live"; };
    source.onerror = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "conn"; };
    source.onmessage = (ev) => { try { render(JSON.parse(ev.data)); } catch (e) { console.error(e); } };
  }

  $("node-filter").addEventListener("change", (e) => {
    node = e.target.value;
    const u = new URL(location.href);
    if (node) u.searchParams.set("node", node); else u.searchParams.delete("node");
    history.replaceState(null, "", u);
    connect();
  });
  makeChart();
  connect();
})();
