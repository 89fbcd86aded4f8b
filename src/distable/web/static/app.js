// The distable dashboard: polls /api/cluster every second and listens to
// /api/events/stream (Server-Sent Events). Plain JS, no dependencies.
// Every value from the cluster is written with textContent, never as HTML.
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
  listen();
})();
