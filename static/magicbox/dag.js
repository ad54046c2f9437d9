// Draws a plan's DAG as SVG into every element with [data-dag], from the JSON of
// <script type="application/json" id="dag-data"> (orchestration/plans/shape.py: dag_data):
// tasks as nodes (in their phases), depends_on edges, the critical path outlined with dashes,
// contracts as dashed purple links. Layout by dagre (static/vendor/dagre).
//
// A plan of more than DRAW_UP_TO tasks is drawn simplified: one node per phase (or, without
// phases, per depth layer, or band of layers), edges between them, and on a run page each
// group's counts by state. Clicking a group draws its tasks (simplified again if still too
// many); the caption above leads back. The drawing scales to its box's width (viewBox).
//
// On a run page (data.run), nodes take their states from the task rows
// (.task-row[data-task][data-state]) and the critical path from #timeline[data-critical] after
// every websocket message, without a new layout; a task node clicked (or Enter on it) dispatches
// "magicbox:select-task" {detail: {task}} on document. window.MagicBoxDag.select(taskId) marks a
// task (or the group holding it) as selected.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var DRAW_UP_TO = 150;  // tasks drawn one by one; a larger view is drawn as groups
  var MAX_PHASES = 40;   // more phases than this in one view: it is drawn by layers
  var MAX_BANDS = 16;    // more layers than this in one view: they are drawn in this many bands
  var CHAR_EM = 0.62;    // the width of a monospace character, in ems (a little over DejaVu Sans Mono's)
  var UPSCALE = 1.5;     // a small drawing grows to at most this many times its natural size
  var SMALLEST = 0.7;    // drawn smaller than this, a top-to-bottom layout is tried too
  var STATES = ["running", "waiting", "queued", "failed", "timed_out", "succeeded", "skipped", "cancelled", "pending"];
  var TASK = { width: [110, 220], height: 40 };
  var GROUP = { width: 190, height: 44, runHeight: 76 };

  var drawings = [];     // every Drawing on the page
  var selected = null;   // the selected task id, kept across redraws
  var serial = 0;        // makes each drawing's marker id unique

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }

  function html(name, attrs, text) {
    var node = document.createElement(name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // `text` cut to what fits `px` pixels at `fontPx` (monospace), with an ellipsis.
  function fit(text, px, fontPx) {
    var most = Math.max(1, Math.floor(px / (fontPx * CHAR_EM)));
    return text.length <= most ? text : text.slice(0, most - 1) + "…";
  }

  function count(n, one, many) { return n.toLocaleString("en") + " " + (n === 1 ? one : many); }

  // ---- What is drawn: a model of the data, and views of it ----

  // The parsed dag-data with lookups, and the live states and critical path.
  function Model(data) {
    this.data = data;
    this.byId = {};
    this.state = {};
    var model = this;
    data.nodes.forEach(function (n) { model.byId[n.id] = n; model.state[n.id] = n.state || ""; });
    this.critical = data.critical || [];
  }

  // The groups a view of `ids` (task ids, in plan order) is drawn as: [{label, kind, ids}], by
  // phase when they have more than one, else by depth (bands of layers when there are many),
  // else in runs of DRAW_UP_TO tasks.
  function groupsOf(model, ids) {
    var nodes = ids.map(function (id) { return model.byId[id]; });
    var byPhase = {}, phases = [];
    nodes.forEach(function (n) {
      var key = n.phase || "";
      if (!byPhase[key]) { byPhase[key] = []; phases.push(key); }
      byPhase[key].push(n.id);
    });
    if (phases.length > 1 && phases.length <= MAX_PHASES) {
      return phases.map(function (p) { return { label: p || "no phase", kind: "phase", ids: byPhase[p] }; });
    }
    var low = Infinity, high = -Infinity;
    nodes.forEach(function (n) { low = Math.min(low, n.depth || 0); high = Math.max(high, n.depth || 0); });
    if (high > low) {
      var band = Math.ceil((high - low + 1) / MAX_BANDS), bands = [];
      nodes.forEach(function (n) {
        var b = Math.floor(((n.depth || 0) - low) / band);
        (bands[b] = bands[b] || []).push(n.id);
      });
      var groups = [];
      bands.forEach(function (members, b) {
        if (!members) return;
        var first = low + b * band + 1, last = Math.min(high + 1, first + band - 1);
        groups.push({ label: first === last ? "layer " + first : "layers " + first + "–" + last, kind: "layer", ids: members });
      });
      return groups;
    }
    var runs = [];
    for (var i = 0; i < ids.length; i += DRAW_UP_TO) {
      runs.push({ label: "tasks " + (i + 1) + "–" + Math.min(ids.length, i + DRAW_UP_TO), kind: "run", ids: ids.slice(i, i + DRAW_UP_TO) });
    }
    return runs;
  }

  // What one view draws: {nodes: [{key, ids?, task?}], links: [{v, w, pairs}], clusters, ...}.
  // A view of at most DRAW_UP_TO tasks draws them; a larger one draws groups of them.
  function viewOf(model, ids) {
    var inView = {}, view = { ids: ids, nodes: [], links: [], of: {}, outside: 0, grouped: ids.length > DRAW_UP_TO };
    ids.forEach(function (id) { inView[id] = true; });
    if (view.grouped) {
      view.groups = groupsOf(model, ids);
      view.groups.forEach(function (group, g) {
        var key = "group:" + g;
        group.key = key;
        group.ids.forEach(function (id) { view.of[id] = key; });
        view.nodes.push({ key: key, group: group });
      });
    } else {
      var phases = {};
      ids.forEach(function (id) {
        var n = model.byId[id];
        view.of[id] = id;
        view.nodes.push({ key: id, task: n });
        if (n.phase) phases[n.phase] = true;
      });
      // Phases are drawn around their tasks, unless the view is one phase's tasks (the caption names it).
      var phaseCount = Object.keys(phases).length;
      view.clusters = phaseCount > 1 || (phaseCount === 1 && ids.length === model.data.nodes.length);
    }
    var links = {};
    model.data.edges.forEach(function (e) {
      var a = inView[e[0]], b = inView[e[1]];
      if (!a || !b) { if (a || b) view.outside += 1; return; }
      var v = view.of[e[0]], w = view.of[e[1]];
      if (v === w) return;
      var key = v + "\u0000" + w;
      if (!links[key]) view.links.push(links[key] = { v: v, w: w, pairs: 0 });
      links[key].pairs += 1;
    });
    return view;
  }

  // ---- Layout ----

  // A node's size: a group's is fixed; a task's as wide as its id (12px) and its worker · state
  // line (10px; room for the longest state on a run page) need, within TASK.width.
  function nodeSize(item, model) {
    if (item.group) return { width: GROUP.width, height: model.data.run ? GROUP.runHeight : GROUP.height };
    var n = item.task, line = n.worker.length + (model.data.run ? 12 : 0);
    return { width: Math.min(TASK.width[1], Math.max(TASK.width[0], Math.ceil(Math.max(n.id.length * 12, line * 10) * CHAR_EM) + 16)),
             height: TASK.height };
  }

  function layout(view, model, rankdir) {
    var g = new dagre.graphlib.Graph({ compound: !!view.clusters, multigraph: false });
    // tight-tree ranks in a fraction of network-simplex's time, nearly as compactly.
    g.setGraph({ rankdir: rankdir, nodesep: 18, ranksep: view.grouped ? 40 : 48, marginx: 12, marginy: 12, ranker: "tight-tree" });
    g.setDefaultEdgeLabel(function () { return {}; });
    view.nodes.forEach(function (item) {
      g.setNode(item.key, nodeSize(item, model));
      if (view.clusters && item.task && item.task.phase) {
        g.setNode("phase:" + item.task.phase, { label: item.task.phase, cluster: true });
        g.setParent(item.key, "phase:" + item.task.phase);
      }
    });
    view.links.forEach(function (link) { g.setEdge(link.v, link.w); });
    dagre.layout(g);
    return g;
  }

  // Nodes without edges between them (one layer's tasks), in rows as wide as the box: an object
  // with the parts of a dagre graph that render reads.
  function grid(view, model, boxWidth) {
    var sizes = view.nodes.map(function (item) { return nodeSize(item, model); });
    var cell = { width: Math.max.apply(null, sizes.map(function (s) { return s.width; })) + 18,
                 height: Math.max.apply(null, sizes.map(function (s) { return s.height; })) + 18 };
    var columns = Math.max(1, Math.min(view.nodes.length, Math.floor((boxWidth - 24 + 18) / cell.width)));
    var placed = {};
    view.nodes.forEach(function (item, i) {
      placed[item.key] = { x: 12 + (i % columns) * cell.width + (cell.width - 18) / 2, y: 12 + Math.floor(i / columns) * cell.height + (cell.height - 18) / 2,
                           width: sizes[i].width, height: sizes[i].height };
    });
    var size = { width: 24 + columns * cell.width - 18, height: 24 + Math.ceil(view.nodes.length / columns) * cell.height - 18 };
    return { nodes: function () { return Object.keys(placed); }, node: function (key) { return placed[key]; },
             graph: function () { return size; } };
  }

  // Left to right, unless that would be drawn smaller than SMALLEST in a box `boxWidth` wide
  // and top to bottom is drawn larger; in rows if no edges join the nodes.
  // {g: the dagre graph (or grid), across: the left-to-right width (0 for a grid)}.
  function laidOut(view, model, boxWidth) {
    if (!view.links.length && !view.clusters && view.nodes.length > 1) return { g: grid(view, model, boxWidth), across: 0 };
    var g = layout(view, model, "LR"), across = g.graph().width;
    if (boxWidth / across >= SMALLEST) return { g: g, across: across };
    var other = layout(view, model, "TB");
    return { g: Math.min(UPSCALE, boxWidth / other.graph().width) > boxWidth / across ? other : g, across: across };
  }

  // ---- Contract labels: placed where they cover the fewest nodes and edges ----

  function crosses(r, p, q) {  // does segment p-q pass through rectangle r (Liang–Barsky)?
    var t0 = 0, t1 = 1, dx = q.x - p.x, dy = q.y - p.y;
    var checks = [[-dx, p.x - r.x], [dx, r.x + r.w - p.x], [-dy, p.y - r.y], [dy, r.y + r.h - p.y]];
    for (var i = 0; i < 4; i++) {
      var a = checks[i][0], b = checks[i][1];
      if (a === 0) { if (b < 0) return false; continue; }
      var t = b / a;
      if (a < 0) { if (t > t1) return false; if (t > t0) t0 = t; } else { if (t < t0) return false; if (t < t1) t1 = t; }
    }
    return true;
  }

  function overlaps(r, s) { return r.x < s.x + s.w && s.x < r.x + r.w && r.y < s.y + s.h && s.y < r.y + r.h; }

  // The box {x, y, w, h} for a label `width` wide near one of `curves` that covers the fewest
  // nodes (`boxes`) and edges (`segments`).
  function placeLabel(width, curves, boxes, segments) {
    var best = null;
    curves.forEach(function (curve) {
      [0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8].forEach(function (t) {
        var p = along(curve, t);
        [[0, 0], [0, -14], [0, 14], [-width / 2 - 4, 0], [width / 2 + 4, 0]].forEach(function (off) {
          var r = { x: p.x + off[0] - width / 2, y: p.y + off[1] - 7, w: width, h: 14 };
          var score = (Math.abs(off[0]) + Math.abs(off[1])) / 100 + Math.abs(t - 0.5) / 10;
          boxes.forEach(function (box) { if (overlaps(r, box)) score += 10; });
          segments.forEach(function (s) { if (crosses(r, s[0], s[1])) score += 1; });
          if (!best || score < best.score) best = { score: score, r: r };
        });
      });
    });
    return best.r;
  }

  // ---- Drawing ----

  function Drawing(target, source, model) {
    this.target = target;
    this.source = source;
    this.model = model;
    this.path = [{ label: "all " + count(model.data.nodes.length, "task", "tasks"), ids: model.data.nodes.map(function (n) { return n.id; }) }];
    this.marker = "dag-arrow-" + (++serial);
  }

  function boxWidth(target) {
    var style = getComputedStyle(target);
    var width = target.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return width > 0 ? width : 1200;
  }

  function render(d) {
    var model = d.model, data = model.data, view = viewOf(model, d.path[d.path.length - 1].ids);
    d.view = view;
    d.boxWidth = boxWidth(d.target);
    var laid = laidOut(view, model, d.boxWidth), g = laid.g;
    d.across = laid.across;
    var clickable = !!data.run;
    var svg = el("svg", { role: "group", class: "dag" });
    var defs = el("defs", {}, svg);
    var marker = el("marker", { id: d.marker, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 10, markerHeight: 10,
                                markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" }, defs);
    el("path", { d: "M0,0 L10,5 L0,10 z", class: "dag-arrow" }, marker);

    // Phases (around their tasks), then edges, contract links, nodes, and contract labels on top.
    g.nodes().forEach(function (id) {
      var n = g.node(id);
      if (!n.cluster) return;
      el("rect", { x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width, height: n.height, rx: 8, class: "dag-phase" }, svg);
      el("text", { x: n.x - n.width / 2 + 8, y: n.y - n.height / 2 + 14, class: "dag-phase-label" }, svg).textContent =
        fit(n.label, n.width - 16, 11);
    });
    d.links = [];
    var segments = [];
    view.links.forEach(function (link) {
      var pts = g.edge(link.v, link.w).points;
      for (var i = 1; i < pts.length; i++) segments.push([pts[i - 1], pts[i]]);
      var path = el("path", { d: "M" + pts.map(function (p) { return p.x + "," + p.y; }).join(" L"),
                              class: "dag-edge" + (view.grouped ? " dag-group-edge" : ""), "marker-end": "url(#" + d.marker + ")" }, svg);
      if (view.grouped) {
        el("title", {}, path).textContent = count(link.pairs, "dependency", "dependencies") + " from " +
          groupByKey(view, link.v).label + " to " + groupByKey(view, link.w).label;
      }
      d.links.push({ v: link.v, w: link.w, el: path });
    });

    var size = g.graph(), bounds = { x: 0, y: 0, x2: size.width, y2: size.height };
    function grow(p) {
      bounds.x = Math.min(bounds.x, p.x); bounds.y = Math.min(bounds.y, p.y);
      bounds.x2 = Math.max(bounds.x2, p.x); bounds.y2 = Math.max(bounds.y2, p.y);
    }
    var boxes = view.nodes.map(function (item) {
      var n = g.node(item.key);
      return { x: n.x - n.width / 2, y: n.y - n.height / 2, w: n.width, h: n.height };
    });
    var contracts = contractLinks(view, data, g, svg);
    contracts.forEach(function (c) { c.curves.forEach(function (curve) { for (var t = 0; t <= 1; t += 0.125) grow(along(curve, t)); }); });

    d.nodes = {};
    view.nodes.forEach(function (item) {
      var p = g.node(item.key);
      d.nodes[item.key] = item.group ? groupNode(svg, item.group, p, data) : taskNode(svg, item.task, p, clickable);
    });
    contracts.forEach(function (c) {
      var r = placeLabel(Math.ceil(c.name.length * 10 * CHAR_EM) + 8, c.curves, boxes, segments);
      boxes.push(r);
      grow({ x: r.x - 2, y: r.y - 2 });
      grow({ x: r.x + r.w + 2, y: r.y + r.h + 2 });
      var label = el("g", { class: "dag-contract-tag" }, svg);
      el("rect", { x: r.x, y: r.y, width: r.w, height: r.h, rx: 3, class: "dag-contract-bg" }, label);
      el("text", { x: r.x + r.w / 2, y: r.y + 10.5, class: "dag-contract-label" }, label).textContent = c.name;
      el("title", {}, label).textContent = "contract " + c.name;
    });

    // Scaled to the box's width by the viewBox (app.css: width 100%), up to UPSCALE times its
    // natural size; a drawing taller than the window is not enlarged.
    var width = bounds.x2 - bounds.x, height = bounds.y2 - bounds.y;
    svg.setAttribute("viewBox", [bounds.x, bounds.y, width, height].join(" "));
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.style.maxWidth = Math.round(width * (height > window.innerHeight ? 1 : UPSCALE)) + "px";
    svg.setAttribute("aria-label", "Task graph" + (view.grouped ? ", simplified: " + view.groups.length + " groups" : ""));
    d.target.replaceChildren(caption(d, view), svg);
    applyStates(d);
    applyCritical(d);
    applySelection(d);
  }

  function groupByKey(view, key) { return view.groups[+key.slice(6)]; }

  // The point at t (0…1) of a quadratic Bézier curve {a, c, b}.
  function along(curve, t) {
    var u = 1 - t;
    return { x: u * u * curve.a.x + 2 * u * t * curve.c.x + t * t * curve.b.x,
             y: u * u * curve.a.y + 2 * u * t * curve.c.y + t * t * curve.b.y };
  }

  // The contract links of a view, drawn into svg now as curves bowed aside (off the edges
  // between the nodes they join): [{name, curves: [{a, c, b}]}]. A contract among the tasks of
  // one group is named on the group instead.
  function contractLinks(view, data, g, svg) {
    var found = [];
    (data.contracts || []).forEach(function (c) {
      var keys = [];
      c.between.forEach(function (id) {
        var key = view.of[id];
        if (key && keys.indexOf(key) < 0) keys.push(key);
      });
      if (view.grouped && keys.length === 1) {
        var group = groupByKey(view, keys[0]);
        group.contracts = (group.contracts || []).concat([c.name]);
        return;
      }
      var curves = [];
      for (var k = 1; k < keys.length; k++) {
        var a = g.node(keys[0]), b = g.node(keys[k]);
        var dx = b.x - a.x, dy = b.y - a.y, len = Math.sqrt(dx * dx + dy * dy) || 1, bow = Math.min(120, 20 + len * 0.3);
        var curve = { a: a, b: b, c: { x: (a.x + b.x) / 2 + dy / len * bow, y: (a.y + b.y) / 2 - dx / len * bow } };
        el("path", { d: "M" + a.x + "," + a.y + " Q" + curve.c.x + "," + curve.c.y + " " + b.x + "," + b.y, class: "dag-contract" }, svg);
        curves.push(curve);
      }
      if (curves.length) found.push({ name: c.name, curves: curves });
    });
    return found;
  }

  function taskNode(svg, n, p, clickable) {
    var x = p.x - p.width / 2, y = p.y - p.height / 2;
    var node = el("g", { class: "dag-node worker-" + n.worker, "data-task": n.id, "data-state": "" }, svg);
    if (clickable) { node.setAttribute("tabindex", "0"); node.setAttribute("role", "button"); }
    el("rect", { x: x - 4, y: y - 4, width: p.width + 8, height: p.height + 8, rx: 9, class: "dag-halo" }, node);
    el("rect", { x: x, y: y, width: p.width, height: p.height, rx: 6, class: "dag-box" }, node);
    el("text", { x: p.x, y: p.y - 3, "text-anchor": "middle", class: "dag-id" }, node).textContent = fit(n.id, p.width - 12, 12);
    el("text", { x: p.x, y: p.y + 12, "text-anchor": "middle", class: "dag-worker" }, node);
    el("title", {}, node);
    node.dataWidth = p.width;
    return node;
  }

  function groupNode(svg, group, p, data) {
    var x = p.x - p.width / 2, y = p.y - p.height / 2;
    var node = el("g", { class: "dag-node dag-group", "data-group": group.label, "data-key": group.key, tabindex: "0", role: "button" }, svg);
    el("rect", { x: x - 4, y: y - 4, width: p.width + 8, height: p.height + 8, rx: 10, class: "dag-halo" }, node);
    el("rect", { x: x, y: y, width: p.width, height: p.height, rx: 8, class: "dag-box" }, node);
    el("text", { x: x + 10, y: y + 17, class: "dag-id" }, node).textContent = fit(group.label, p.width - 20, 12);
    el("text", { x: x + 10, y: y + 32, class: "dag-worker" }, node).textContent =
      fit(count(group.ids.length, "task", "tasks") + (group.contracts ? " · contract " + group.contracts.join(", ") : ""), p.width - 20, 10);
    if (data.run) {
      el("text", { x: x + 10, y: y + 46, class: "dag-counts" }, node);
      el("text", { x: x + 10, y: y + 58, class: "dag-counts" }, node);
      var bar = el("g", { class: "dag-bar", "data-x": x + 10, "data-y": y + p.height - 11, "data-width": p.width - 20 }, node);
      el("rect", { x: x + 10, y: y + p.height - 11, width: p.width - 20, height: 5, class: "dag-bar-track" }, bar);
    }
    el("title", {}, node);
    return node;
  }

  // The line above the drawing: what is simplified, and the way back from a group.
  function caption(d, view) {
    var p = html("p", { class: "dag-caption", tabindex: "-1" });
    if (d.path.length > 1) {
      d.path.forEach(function (step, i) {
        if (i === d.path.length - 1) { p.appendChild(html("strong", {}, step.label)); return; }
        p.appendChild(html("button", { type: "button", class: "link", "data-dag-up": String(i) }, i === 0 ? "All tasks" : step.label));
        p.appendChild(document.createTextNode(" › "));
      });
      p.appendChild(document.createTextNode(" "));
    }
    var text = "";
    if (view.grouped) {
      var kind = view.groups[0].kind, banded = view.groups.some(function (g) { return g.label.indexOf("–") >= 0; });
      text = "Simplified: " + count(view.ids.length, "task", "tasks") + " drawn as " + view.groups.length + " " +
        (kind === "phase" ? "phases" : kind === "run" ? "parts" : banded ? "bands of layers" : "layers") +
        " (more than " + DRAW_UP_TO + " are too many to draw one by one). " +
        (kind === "layer" ? "A task's layer is 1 + the longest chain of tasks it waits for. " : "") + "Click a group to draw its tasks.";
    } else if (d.path.length > 1) {
      text = view.outside ? count(view.outside, "dependency", "dependencies") + " on tasks outside this group not drawn." : "";
    }
    if (!text && d.path.length === 1) p.hidden = true;
    p.appendChild(document.createTextNode(text));
    return p;
  }

  // ---- Live: states, critical path, selection ----

  function applyStates(d) {
    var model = d.model, view = d.view;
    if (!view.grouped) {
      view.nodes.forEach(function (item) {
        var node = d.nodes[item.key], n = item.task, state = model.state[n.id];
        if (node.dataset.state === state && node.dataset.drawn) return;
        node.dataset.drawn = "1";
        if (node.dataset.state) node.classList.remove("state-node-" + node.dataset.state);
        if (state) node.classList.add("state-node-" + state);
        node.dataset.state = state;
        var line = n.worker + (state ? " · " + state : "");
        node.querySelector("text.dag-worker").textContent = fit(line, node.dataWidth - 12, 10);
        node.querySelector("title").textContent = n.id + " (" + line + ")";
        if (model.data.run) node.setAttribute("aria-label", "Task " + n.id + ", " + (state || n.worker));
      });
      return;
    }
    view.groups.forEach(function (group) {
      var node = d.nodes[group.key], counts = {};
      group.ids.forEach(function (id) { var s = model.state[id]; if (s) counts[s] = (counts[s] || 0) + 1; });
      var parts = STATES.filter(function (s) { return counts[s]; }).map(function (s) { return counts[s] + " " + s.replace("_", " "); });
      var signature = parts.join(", ");
      if (node.dataset.counts === signature && node.dataset.drawn) return;
      node.dataset.drawn = "1";
      node.dataset.counts = signature;
      var title = group.label + ": " + count(group.ids.length, "task", "tasks") + (signature ? " (" + signature + ")" : "") +
        (group.contracts ? "; contract " + group.contracts.join(", ") : "") + ". Click to draw its tasks.";
      node.querySelector("title").textContent = title;
      node.setAttribute("aria-label", title);
      if (!model.data.run) return;
      var lines = node.querySelectorAll("text.dag-counts"), width = +node.querySelector(".dag-bar").dataset.width;
      var most = Math.floor(width / (10 * CHAR_EM)), first = "", second = "";
      parts.forEach(function (part) {
        if (!second && (first ? first + " · " + part : part).length <= most) first = first ? first + " · " + part : part;
        else second = second ? second + " · " + part : part;
      });
      lines[0].textContent = first;
      lines[1].textContent = fit(second, width, 10);
      var bar = node.querySelector(".dag-bar"), x = +bar.dataset.x;
      bar.querySelectorAll(".dag-bar-part").forEach(function (part) { part.remove(); });
      STATES.forEach(function (s) {
        if (!counts[s]) return;
        var w = width * counts[s] / group.ids.length;
        el("rect", { x: x, y: bar.dataset.y, width: w, height: 5, class: "dag-bar-part state-fill-" + s }, bar);
        x += w;
      });
    });
  }

  function applyCritical(d) {
    var view = d.view, onPath = {}, pairs = {}, path = d.model.critical;
    path.forEach(function (id, i) {
      var key = view.of[id];
      if (key) onPath[key] = true;
      var prev = i && view.of[path[i - 1]];
      if (prev && key && prev !== key) pairs[prev + "\u0000" + key] = true;
    });
    Object.keys(d.nodes).forEach(function (key) { d.nodes[key].classList.toggle("dag-critical-node", !!onPath[key]); });
    d.links.forEach(function (link) { link.el.classList.toggle("dag-critical", !!pairs[link.v + "\u0000" + link.w]); });
  }

  function applySelection(d) {
    var key = selected && d.view.of[selected];
    Object.keys(d.nodes).forEach(function (k) {
      var node = d.nodes[k], on = k === key;
      node.classList.toggle("dag-selected", on);
      if (on) node.setAttribute("aria-current", "true"); else node.removeAttribute("aria-current");
    });
  }

  // The current critical path: #timeline's data-critical (a run page), else the page's data.
  function currentCritical(model) {
    var timeline = document.getElementById("timeline");
    var ids = timeline && timeline.dataset.critical ? timeline.dataset.critical.split(/\s+/).filter(Boolean) : [];
    return ids.length ? ids : model.data.critical || [];
  }

  // Nodes take their tasks' rows' states (a task without a row keeps its state), and the
  // critical path is read again. O(rows + nodes).
  function refresh() {
    var rows = document.querySelectorAll(".task-row[data-task]"), states = {};
    for (var i = 0; i < rows.length; i++) states[rows[i].dataset.task] = rows[i].dataset.state || "";
    drawings.forEach(function (d) {
      if (!d.view) return;
      var model = d.model;
      for (var id in states) if (id in model.state) model.state[id] = states[id];
      model.critical = currentCritical(model);
      applyStates(d);
      applyCritical(d);
    });
  }

  function select(taskId) {
    selected = taskId || null;
    drawings.forEach(function (d) { if (d.view) applySelection(d); });
  }

  // ---- Events ----

  function activate(d, node) {
    if (node.classList.contains("dag-group")) {
      var group = groupByKey(d.view, node.dataset.key);
      d.path.push({ label: group.label + " · " + count(group.ids.length, "task", "tasks"), ids: group.ids });
      render(d);
      d.target.querySelector(".dag-caption").focus();
    } else if (d.model.data.run && node.dataset.task) {
      select(node.dataset.task);
      document.dispatchEvent(new CustomEvent("magicbox:select-task", { detail: { task: node.dataset.task } }));
    }
  }

  function listen(d) {
    var target = d.target;
    target.addEventListener("click", function (event) {
      var d = drawingOf(target);
      if (!d) return;
      var up = event.target.closest("[data-dag-up]");
      if (up) {
        d.path.length = +up.dataset.dagUp + 1;
        render(d);
        d.target.querySelector(".dag-caption").focus();
        return;
      }
      var node = event.target.closest("g.dag-node");
      if (node) activate(d, node);
    });
    target.addEventListener("keydown", function (event) {
      if (event.key !== "Enter" && event.key !== " ") return;
      var d = drawingOf(target), node = event.target;
      if (!d || !node.classList || !node.classList.contains("dag-node")) return;
      event.preventDefault();
      activate(d, node);
    });
    if (typeof ResizeObserver !== "undefined") {
      // A new box width may call for the other direction, or other rows: lay out again only then.
      new ResizeObserver(function () {
        var d = drawingOf(target);
        if (!d || !d.view || !target.clientWidth) return;
        var width = boxWidth(target);
        var rows = !d.across && Math.abs(width - d.boxWidth) > 40;  // a grid: as many to a row as fit
        if (rows || (width / d.across < SMALLEST) !== (d.boxWidth / d.across < SMALLEST)) render(d);
      }).observe(target);
    }
  }

  function drawingOf(target) {
    for (var i = 0; i < drawings.length; i++) if (drawings[i].target === target) return drawings[i];
    return null;
  }

  function drawAll() {
    drawings = drawings.filter(function (d) { return d.target.isConnected; });
    var source = document.getElementById("dag-data");
    if (!source || typeof dagre === "undefined") return;
    document.querySelectorAll("[data-dag]").forEach(function (target) {
      var d = drawingOf(target);
      if (d && d.source === source.textContent) return;  // unchanged: keep the drawing
      if (target.closest("details:not([open])")) return;  // drawn when opened (large runs start closed)
      if (target.closest("[hidden]") || !target.clientWidth) return;  // drawn when shown: it fits the box it is shown in
      var data = JSON.parse(source.textContent);
      if (!data || !data.nodes.length) {
        target.replaceChildren();
        if (d) { d.source = source.textContent; d.view = null; }
        return;
      }
      var fresh = new Drawing(target, source.textContent, new Model(data));
      fresh.model.critical = currentCritical(fresh.model);
      if (d) drawings[drawings.indexOf(d)] = fresh; else { drawings.push(fresh); listen(fresh); }
      render(fresh);
    });
    refresh();
  }

  document.addEventListener("DOMContentLoaded", drawAll);
  // The editor swaps in new DAG data as the plan is typed.
  document.addEventListener("htmx:afterSettle", drawAll);
  document.addEventListener("htmx:wsAfterMessage", refresh);
  document.addEventListener("toggle", drawAll, true);
  window.MagicBoxDag = { drawAll: drawAll, recolour: refresh, select: select };
})();
