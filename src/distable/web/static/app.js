// The distable dashboard: polls /api/cluster every second, draws /api/history as charts
// (uPlot, vendored beside this file) and listens to /api/events/stream (Server-Sent
// Events). Plain JS, no build step. Every value from the cluster is written with
// textContent, never as HTML.
"use strict";

(() => {
  const POLL_MS = 1000;
  const MAX_EVENTS = 200;
  const byId = (id) => document.getElementById(id);
  const skipped = {};

  // A colour per node, the same in every bar and the legend for as long as the page is
  // open: given in order of first appearance from a palette of distinct colours (a hash of
  // the name gave two nodes of one cluster the same colour), then golden-angle hues.
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  const colors = new Map();
  function color(name) {
    let c = colors.get(name);
    if (c === undefined) {
      const i = colors.size;
      c = i < PALETTE.length ? PALETTE[i] : `hsl(${Math.round(i * 137.508) % 360}, 55%, 50%)`;
      colors.set(name, c);
    }
    return c;
  }

  function element(tag, attrs, text) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function duration(seconds) {
    if (seconds == null) return "–";
    const s = Math.floor(seconds);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  const percent = (x) => `${(100 * x).toFixed(1)}%`;
  const pidNode = (pid) => (/^<pid (.+)\/\d+>$/.exec(pid || "") || [null, pid])[1];

  // --- the cluster ---------------------------------------------------------------------

  const COLUMNS = [
    ["name", (n) => n.name],
    ["role", (n) => n.role],
    ["uptime num", (n) => duration(n.uptime)],
    ["procs num", (n) => n.processes],
    ["local num", (n) => n.local_names],
    ["names num", (n) => n.names],
    ["handoffs num", (n) => `${n.handoffs.started} / ${n.handoffs.completed} / ${n.handoffs.aborted}`],
    ["restarts num", (n) => n.restarts],
    ["conflicts num", (n) => n.conflicts],
    ["peers num", (n) => n.peers],
    ["lag num", (n) => `${(1000 * n.loop_lag).toFixed(1)} ms`],
  ];

  function renderNodes(nodes) {
    const body = byId("nodes").tBodies[0];
    const old = new Map([...body.rows].map((tr) => [tr.dataset.node, tr]));
    nodes.forEach((node, index) => {
      let tr = old.get(node.name);
      old.delete(node.name);
      if (!tr) {
        tr = element("tr", { "data-node": node.name });
        for (const [cls] of COLUMNS) tr.appendChild(element("td", { class: cls }));
      }
      if (body.rows[index] !== tr) body.insertBefore(tr, body.rows[index] || null);
      tr.classList.toggle("unreachable", Boolean(node.error));
      tr.dataset.role = node.role || "";
      COLUMNS.forEach(([cls, read], i) => {
        const cell = tr.cells[i];
        if (node.error && i > 0) {
          cell.textContent = i === 1 ? node.error : "";
        } else {
          cell.textContent = String(read(node));
        }
      });
      tr.cells[0].style.borderLeft = `4px solid ${color(node.name)}`;
    });
    for (const tr of old.values()) tr.remove();
  }

  function renderBar(bar, entries) {
    bar.replaceChildren(
      ...entries
        .filter((e) => e.share > 0)
        .map((e) => {
          const seg = element("div", { class: "seg", "data-node": e.node, title: `${e.node}: ${percent(e.share)}` });
          seg.style.width = percent(e.share);
          seg.style.background = color(e.node);
          return seg;
        })
    );
  }

  function renderRing(ring) {
    renderBar(byId("ring-hash"), ring.nodes.map((n) => ({ node: n.node, share: n.hash_share })));
    renderBar(byId("ring-names"), ring.nodes.map((n) => ({ node: n.node, share: n.name_share })));
    byId("ring-legend").replaceChildren(
      ...ring.nodes.map((n) => {
        const li = element("li", { "data-node": n.node });
        const swatch = element("span", { class: "swatch" });
        swatch.style.background = color(n.node);
        const names = n.names == null ? "?" : n.names;
        li.append(swatch, `${n.node}: ${percent(n.hash_share)} of the ring, ${names} names`);
        return li;
      })
    );
  }

  function render(snapshot) {
    byId("self").textContent = `served by ${snapshot.node}`;
    byId("node-count").textContent = snapshot.counts.nodes;
    byId("name-count").textContent = snapshot.counts.names == null ? "?" : snapshot.counts.names;
    byId("process-count").textContent = snapshot.counts.processes;
    byId("unreachable-count").textContent = snapshot.counts.unreachable;
    renderNodes(snapshot.nodes);
    renderRing(snapshot.ring);
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }

  function setStatus(state, text) {
    const status = byId("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  async function pollCluster() {
    try {
      const response = await fetch("/api/cluster", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
      setStatus("live", `live · ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      setStatus("error", `cannot reach the node: ${err.message}`);
    } finally {
      setTimeout(pollCluster, POLL_MS);
    }
  }

  // --- charts over time ----------------------------------------------------------------
  // /api/history once for what the server kept (the last 10 minutes), then ?since= the
  // last sample every second. Series are columns aligned with `time`, null where a node
  // did not answer or was not there (a gap in its line).

  const CHART_HEIGHT = 170;
  const CHARTS = [
    { id: "names", title: "names hosted per node", node: "names" },
    { id: "processes", title: "processes per node", node: "processes" },
    {
      id: "nodes",
      title: "nodes in the cluster",
      cluster: [["nodes", "nodes", "#1d1f21"], ["unreachable", "unreachable", "#c62828"]],
    },
    {
      id: "rates",
      title: "handoffs and restarts per second, cluster-wide",
      cluster: [["handoffs", "handoffs/s", "#f28e2b"], ["restarts", "restarts/s", "#b07aa1"]],
      decimals: 1,
    },
    { id: "calls", title: "calls per second per node", node: "calls", decimals: 1 },
    { id: "lag", title: "event loop lag per node (ms)", node: "loop_lag", scale: 1000, decimals: 1 },
  ];
  const history = { size: 600, time: [], cluster: {}, nodes: new Map() };
  const charts = new Map(); // chart id -> { plot: uPlot, signature: its series' names }
  window.distableCharts = { charts, history }; // for the browser tests and the curious

  // Appends a batch of /api/history to `history`, keeping at most `size` samples.
  function mergeHistory(batch) {
    const before = history.time.length;
    const added = batch.time.length;
    history.size = batch.size;
    if (added === 0) return false;
    const gap = (n) => new Array(n).fill(null);
    history.time.push(...batch.time);
    for (const [key, values] of Object.entries(batch.cluster)) {
      if (!history.cluster[key]) history.cluster[key] = gap(before);
      history.cluster[key].push(...values);
    }
    for (const [name, fresh] of Object.entries(batch.nodes)) {
      if (!history.nodes.has(name)) {
        history.nodes.set(name, Object.fromEntries(Object.keys(fresh).map((key) => [key, gap(before)])));
      }
    }
    for (const [name, series] of history.nodes) {
      const fresh = batch.nodes[name];
      for (const [key, values] of Object.entries(series)) values.push(...(fresh ? fresh[key] : gap(added)));
    }
    const excess = history.time.length - history.size;
    if (excess > 0) {
      history.time.splice(0, excess);
      for (const values of Object.values(history.cluster)) values.splice(0, excess);
      for (const [name, series] of history.nodes) {
        for (const values of Object.values(series)) values.splice(0, excess);
        if (Object.values(series).every((values) => values.every((v) => v === null))) history.nodes.delete(name);
      }
    }
    return true;
  }

  function buildCharts() {
    byId("charts").replaceChildren(
      ...CHARTS.map((def) => {
        const figure = element("figure", { class: "chart", "data-chart": def.id });
        figure.append(element("figcaption", {}, def.title), element("div", { id: `chart-${def.id}`, class: "plot" }));
        return figure;
      })
    );
  }

  const plotWidth = (box) => Math.max(240, box.clientWidth);

  // A value with no neighbour (a node seen in one sample) makes no line: draw it as a dot.
  function isolated(u, seriesIdx) {
    const ys = u.data[seriesIdx];
    const found = [];
    for (let i = 0; i < ys.length; i++) {
      if (ys[i] != null && (i === 0 || ys[i - 1] == null) && (i === ys.length - 1 || ys[i + 1] == null)) found.push(i);
    }
    return found.length ? found : null;
  }

  // The legend shows the latest values while the pointer is not over the chart.
  function showLatest(plot) {
    const last = plot.data[0].length - 1;
    if (last >= 0 && !(plot.cursor.left >= 0)) plot.setLegend({ idx: last });
  }

  function drawCharts() {
    const nodes = [...history.nodes.keys()];
    for (const def of CHARTS) {
      const scale = def.scale || 1;
      const scaled = (values) => (scale === 1 ? values : values.map((v) => (v === null ? null : v * scale)));
      const columns = def.node
        ? nodes.map((n) => scaled(history.nodes.get(n)[def.node]))
        : def.cluster.map(([key]) => scaled(history.cluster[key] || history.time.map(() => null)));
      const data = [history.time, ...columns];
      const signature = def.node ? nodes.join("\n") : "cluster";
      const chart = charts.get(def.id);
      if (chart && chart.signature === signature) {
        chart.plot.setData(data);
        showLatest(chart.plot);
        continue;
      }
      if (chart) chart.plot.destroy(); // the nodes changed: a new chart with a line per node
      const value = (u, v) => (v == null ? "–" : v.toFixed(def.decimals || 0));
      const lines = def.node
        ? nodes.map((n) => ({ label: n, stroke: color(n) }))
        : def.cluster.map(([, label, stroke]) => ({ label, stroke }));
      const box = byId(`chart-${def.id}`);
      const plot = new uPlot(
        {
          width: plotWidth(box),
          height: CHART_HEIGHT,
          series: [
            {},
            ...lines.map((line) => ({
              ...line,
              width: 1.5,
              points: { show: false, filter: isolated, size: 7, fill: line.stroke },
              value,
            })),
          ],
          scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, hi > 0 ? hi * 1.1 : 1] } },
          axes: [{}, { size: 50 }],
          cursor: { drag: { x: false, y: false } },
        },
        data,
        box
      );
      charts.set(def.id, { plot, signature });
      showLatest(plot);
    }
    document.body.dataset.chartUpdates = String(Number(document.body.dataset.chartUpdates || 0) + 1);
  }

  async function pollHistory() {
    try {
      const last = history.time[history.time.length - 1];
      const url = last === undefined ? "/api/history" : `/api/history?since=${last}`;
      const response = await fetch(url, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      if (mergeHistory(await response.json()) || charts.size === 0) drawCharts();
    } catch (err) {
      console.error("cannot read the history", err);
    } finally {
      setTimeout(pollHistory, POLL_MS);
    }
  }

  function startCharts() {
    if (!window.uPlot) {
      byId("charts").textContent = "charts unavailable: uPlot did not load";
      return;
    }
    buildCharts();
    let resizing = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => {
        for (const [id, { plot }] of charts) {
          plot.setSize({ width: plotWidth(byId(`chart-${id}`)), height: CHART_HEIGHT });
        }
      }, 100);
    });
    pollHistory();
  }

  // --- events --------------------------------------------------------------------------

  function describe(e) {
    switch (e.type) {
      case "NodeUp":
        return `${e.source} sees ${e.node} up`;
      case "NodeDown":
        return `${e.source} sees ${e.node} down (${e.reason})`;
      case "HandoffCompleted":
        return `${e.name} moved from ${e.source} to ${pidNode(e.new_pid)} (${e.answer}, ${(1000 * e.duration).toFixed(1)} ms)`;
      case "HandoffAborted":
        return `handoff of ${e.name} from ${e.source} aborted: ${e.reason}`;
      case "ProcessRestarted":
        return `${e.name} restarted on ${e.source} (${e.reason})`;
      case "ConflictResolved":
        return `conflict on ${e.name} resolved by ${e.source}: ${e.winner} stays, ${e.loser} stops`;
      default:
        return `${e.source}: ${e.type}`;
    }
  }

  function addEvents(batch) {
    const list = byId("events");
    for (const e of batch.events) {
      const li = element("li", { "data-type": e.type, "data-source": e.source });
      li.append(element("span", { class: "time" }, new Date(e.time * 1000).toLocaleTimeString()), describe(e));
      list.prepend(li);
    }
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    for (const [type, count] of Object.entries(batch.skipped || {})) skipped[type] = (skipped[type] || 0) + count;
    const parts = Object.entries(skipped).map(([type, count]) => `${count} ${type}`);
    byId("skipped").textContent = parts.length ? `(not listed: ${parts.join(", ")})` : "";
  }

  function listen() {
    if (!window.EventSource) return;
    const source = new EventSource("/api/events/stream");
    source.onmessage = (message) => {
      try {
        addEvents(JSON.parse(message.data));
      } catch (err) {
        console.error("bad event batch", err);
      }
    };
  }

  pollCluster();
  startCharts();
  listen();
})();
