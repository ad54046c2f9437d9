// Draws a plan's DAG as SVG: tasks as nodes (grouped by phase), depends_on edges, the critical
// path in bold, contracts as dashed links. Layout by dagre (static/vendor/dagre). Reads the JSON
// of <script type="application/json" id="dag-data"> (orchestration/plans/shape.py: dag_data) and
// draws into every element with [data-dag].
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function draw(target, data) {
    var g = new dagre.graphlib.Graph({ compound: true, multigraph: false });
    g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 48, marginx: 12, marginy: 12 });
    g.setDefaultEdgeLabel(function () { return {}; });
    var phases = {};
    data.nodes.forEach(function (n) {
      g.setNode(n.id, { width: Math.max(110, 8 * n.id.length + 24), height: 40, data: n });
      if (n.phase) {
        if (!phases[n.phase]) { phases[n.phase] = true; g.setNode("phase:" + n.phase, { label: n.phase, cluster: true }); }
        g.setParent(n.id, "phase:" + n.phase);
      }
    });
    data.edges.forEach(function (e) { g.setEdge(e[0], e[1]); });
    dagre.layout(g);

    var critical = {};
    for (var i = 1; i < data.critical.length; i++) critical[data.critical[i - 1] + ">" + data.critical[i]] = true;
    var size = g.graph();
    var svg = el("svg", { viewBox: "0 0 " + size.width + " " + size.height, width: size.width, height: size.height,
                         role: "img", "aria-label": "Task graph", class: "dag" });
    el("defs", {}, svg).innerHTML =
      '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">' +
      '<path d="M0,0 L10,5 L0,10 z" fill="#8a93a6"/></marker>';

    g.nodes().forEach(function (id) {
      var n = g.node(id);
      if (!n.cluster) return;
      el("rect", { x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width, height: n.height, rx: 8, class: "dag-phase" }, svg);
      el("text", { x: n.x - n.width / 2 + 8, y: n.y - n.height / 2 + 14, class: "dag-phase-label" }, svg).textContent = n.label;
    });
    g.edges().forEach(function (e) {
      var pts = g.edge(e).points;
      var d = "M" + pts.map(function (p) { return p.x + "," + p.y; }).join(" L");
      el("path", { d: d, class: "dag-edge" + (critical[e.v + ">" + e.w] ? " dag-critical" : ""), "marker-end": "url(#arrow)" }, svg);
    });
    data.contracts.forEach(function (c) {
      for (var k = 1; k < c.between.length; k++) {
        var a = g.node(c.between[0]), b = g.node(c.between[k]);
        if (!a || !b) continue;
        el("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: "dag-contract" }, svg);
        var t = el("text", { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 4, class: "dag-contract-label" }, svg);
        t.textContent = c.name;
      }
    });
    data.nodes.forEach(function (n) {
      var p = g.node(n.id);
      var onPath = data.critical.indexOf(n.id) >= 0;
      var group = el("g", { class: "dag-node worker-" + n.worker + (n.state ? " state-node-" + n.state : "") + (onPath ? " dag-critical-node" : ""),
                            "data-task": n.id, "data-state": n.state || "" }, svg);
      el("rect", { x: p.x - p.width / 2, y: p.y - p.height / 2, width: p.width, height: p.height, rx: 6 }, group);
      el("text", { x: p.x, y: p.y - 3, "text-anchor": "middle", class: "dag-id" }, group).textContent = n.id;
      el("text", { x: p.x, y: p.y + 12, "text-anchor": "middle", class: "dag-worker" }, group).textContent = n.worker + (n.state ? " · " + n.state : "");
      el("title", {}, group).textContent = n.id + " (" + n.worker + ")";
    });
    target.replaceChildren(svg);
  }

  function drawAll() {
    var source = document.getElementById("dag-data");
    if (!source || typeof dagre === "undefined") return;
    document.querySelectorAll("[data-dag]").forEach(function (target) {
      if (target.dataset.drawn === source.textContent) return;  // unchanged: keep the drawing
      if (target.closest("details:not([open])")) return;  // drawn when opened (large runs start closed)
      var data = JSON.parse(source.textContent);
      if (data) draw(target, data); else target.replaceChildren();
      target.dataset.drawn = source.textContent;
    });
    recolour();
  }

  // On a run page, each node takes the state of its task's row (kept live by the websocket).
  function recolour() {
    document.querySelectorAll(".task-row[data-task]").forEach(function (row) {
      var state = row.dataset.state;
      document.querySelectorAll("svg.dag g.dag-node").forEach(function (node) {
        if (node.dataset.task !== row.dataset.task || node.dataset.state === state) return;
        node.setAttribute("class", node.getAttribute("class").replace(/\s*state-node-\S+/g, "") + " state-node-" + state);
        node.dataset.state = state;
        var label = node.querySelector("text.dag-worker");
        if (label) label.textContent = label.textContent.split(" · ")[0] + " · " + state;
      });
    });
  }
  document.addEventListener("DOMContentLoaded", drawAll);
  // The editor swaps in new DAG data as the plan is typed.
  document.addEventListener("htmx:afterSettle", drawAll);
  document.addEventListener("htmx:wsAfterMessage", recolour);
  document.addEventListener("toggle", drawAll, true);
  window.MagicBoxDag = { drawAll: drawAll, recolour: recolour };
})();
