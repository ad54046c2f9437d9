// The run page (templates/runs/detail.html): the tabs of its run-wide parts, the task pane's
// views (list, graph, timeline) and filter, selecting a task (its detail and output come over the
// page's websocket: orchestration/consumers.py RunConsumer.receive), and links to log lines (#L<n>).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) return;
  var socket = null;          // the ws extension's socket wrapper, once open
  var firstOpen = true;       // the first connection: the page's own log is current up to its data-seq
  var scrollToDetail = null;  // on a narrow screen: the task whose detail to bring into view when it arrives
  var initialTask = (document.getElementById("task-detail") || {dataset: {}}).dataset.task;  // the one the page opened on

  function detail() { return document.getElementById("task-detail"); }
  function narrow() { return window.matchMedia("(max-width: 900px)").matches; }
  function rowFor(taskId) { return document.querySelector(".task-row[data-task=\"" + CSS.escape(taskId) + "\"]"); }
  function params() { return new URL(window.location.href).searchParams; }

  // ---- Tabs: Tasks | Checks | Code changes | History (?tab=) -------------------------------------
  function showTab(name) {
    if (!document.querySelector(".run-panel[data-panel=\"" + name + "\"]")) name = "tasks";
    document.querySelectorAll(".run-panel").forEach(function (panel) { panel.hidden = panel.dataset.panel !== name; });
    document.querySelectorAll("#run-tabs a[data-tab]").forEach(function (a) {
      if (a.dataset.tab === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    if (name === "tasks") drawGraphIfShown();
  }

  // ---- The task pane's views: list, graph, timeline (remembered in this browser) -------------------
  var VIEW_KEY = "magicbox.run.view";
  function showView(name) {
    var pane = document.querySelector(".task-pane");
    if (!pane || !pane.querySelector(".pane-view[data-view=\"" + name + "\"]")) name = "list";
    document.querySelectorAll(".pane-view").forEach(function (view) { view.hidden = view.dataset.view !== name; });
    document.querySelectorAll(".pane-views button[data-view]").forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.view === name)); });
    var body = document.querySelector(".run-body");
    if (body) body.dataset.view = name;
    try { window.localStorage.setItem(VIEW_KEY, name); } catch (e) { /* storage refused: not remembered */ }
    drawGraphIfShown();
  }
  function drawGraphIfShown() {
    var graph = document.querySelector(".pane-view[data-view=graph]");
    if (graph && !graph.hidden && window.MagicBoxDag) { window.MagicBoxDag.drawAll(); markSelected(); }
  }

  // ---- Filter the tasks by id ------------------------------------------------------------------
  function applyFilter() {
    var input = document.getElementById("task-filter");
    var wanted = input ? input.value.trim().toLowerCase() : "";
    var shown = 0;
    document.querySelectorAll(".task-row[data-task], .tl-row[data-task]").forEach(function (row) {
      var match = !wanted || row.dataset.task.toLowerCase().indexOf(wanted) >= 0;
      row.hidden = !match;
      if (match && row.classList.contains("task-row")) shown++;
    });
    var none = document.getElementById("no-task-matches");
    if (none) none.hidden = shown > 0 || !wanted;
  }

  // ---- Selecting a task -----------------------------------------------------------------------
  function markSelected() {
    var shown = detail();
    var taskId = shown && shown.dataset.task;
    document.querySelectorAll(".task-row[data-task], .tl-row[data-task]").forEach(function (row) {
      if (row.dataset.task === taskId) row.setAttribute("aria-current", "true"); else row.removeAttribute("aria-current");
    });
    if (taskId && window.MagicBoxDag && window.MagicBoxDag.select) window.MagicBoxDag.select(taskId);
  }

  // Shows `taskId` in the detail through the socket; false when that cannot be done here (the
  // caller then lets the browser load ?task= as a page).
  function select(taskId, remember) {
    var row = rowFor(taskId);
    if (!row || !socket || document.body.dataset.socket !== "open") return false;
    // Always asked for, even when shown: replies come in order, so the last asked is the last shown.
    socket.send(JSON.stringify({ select: Number(row.dataset.pk) }));
    if (remember) {
      var url = new URL(window.location.href);
      url.searchParams.set("task", taskId);
      url.searchParams.delete("tab");
      url.hash = "";
      window.history.pushState({ task: taskId }, "", url);
    }
    scrollToDetail = narrow() ? taskId : null;
    showTab("tasks");
    return true;
  }

  document.addEventListener("click", function (event) {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    var tab = event.target.closest("#run-tabs a[data-tab]");
    if (tab) {
      event.preventDefault();
      var url = new URL(window.location.href);
      if (tab.dataset.tab === "tasks") url.searchParams.delete("tab"); else url.searchParams.set("tab", tab.dataset.tab);
      url.hash = "";
      if (url.href !== window.location.href) window.history.pushState({ tab: tab.dataset.tab }, "", url);
      showTab(tab.dataset.tab);
      return;
    }
    var view = event.target.closest(".pane-views button[data-view]");
    if (view) { showView(view.dataset.view); return; }
    var link = event.target.closest("#live a[href^=\"?task=\"]");
    if (link) {
      var taskId = link.dataset.task || link.dataset.taskLink || new URLSearchParams(link.getAttribute("href")).get("task");
      if (link.classList.contains("permalink")) return;  // a plain link to copy or open
      if (select(taskId, true)) event.preventDefault();
    }
  });
  // A DAG node was clicked (static/magicbox/dag.js).
  document.addEventListener("magicbox:select-task", function (event) {
    var taskId = event.detail && event.detail.task;
    if (taskId && !select(taskId, true)) {
      var url = new URL(window.location.href);
      url.searchParams.set("task", taskId);
      url.hash = "";
      window.location.assign(url);
    }
  });
  // Back and Forward: the page shows what its URL names (a URL naming no task opens the page again,
  // on the task it would open on).
  window.addEventListener("popstate", function () {
    var taskId = params().get("task"), shown = detail();
    showTab(params().get("tab") || "tasks");
    if (!taskId) { if (shown && shown.dataset.task !== initialTask) window.location.reload(); return; }
    if (!select(taskId, false)) window.location.reload();
  });
  document.addEventListener("input", function (event) { if (event.target.id === "task-filter") applyFilter(); });

  // ---- The socket: say which task this page shows, every time it (re)connects --------------------
  live.addEventListener("htmx:wsOpen", function (event) {
    socket = event.detail.socketWrapper;
    var shown = detail(), log = shown && shown.querySelector("pre.log");
    if (!shown || !shown.dataset.pk) return;
    var message = { select: Number(shown.dataset.pk) };
    if (firstOpen && log) message.seq = Number(log.dataset.seq || 0);  // the page's own log is current up to there
    firstOpen = false;
    socket.send(JSON.stringify(message));
  });
  live.addEventListener("htmx:wsAfterMessage", function () {
    showTab(params().get("tab") || "tasks");
    applyFilter();
    markSelected();
    var shown = detail();
    if (scrollToDetail && shown && shown.dataset.task === scrollToDetail) {
      shown.scrollIntoView({ block: "start" });
      scrollToDetail = null;
    }
    highlightLine(false);
  });

  // ---- Links to log lines: click a line for #L<n>; open a link and the line is shown -----------
  function logOf(node) { return node && node.closest ? node.closest("pre.log") : null; }
  function caretAt(x, y) {
    if (document.caretPositionFromPoint) {
      var p = document.caretPositionFromPoint(x, y);
      return p && { node: p.offsetNode, offset: p.offset };
    }
    if (document.caretRangeFromPoint) {
      var r = document.caretRangeFromPoint(x, y);
      return r && { node: r.startContainer, offset: r.startOffset };
    }
    return null;
  }
  function lineNumberAt(log, node, offset) {
    var range = document.createRange();
    range.setStart(log, 0);
    range.setEnd(node, offset);
    var before = range.toString();
    return Number(log.dataset.firstLine || 1) + (before.match(/\n/g) || []).length;
  }
  // The Range of line `n` of the log (null when it is not shown: earlier than the shown window or not yet written).
  function lineRange(log, n) {
    var skip = n - Number(log.dataset.firstLine || 1);
    if (skip < 0) return null;
    var walker = document.createTreeWalker(log, NodeFilter.SHOW_TEXT);
    var range = document.createRange(), started = skip === 0, node;
    if (started) range.setStart(log, 0);
    while ((node = walker.nextNode())) {
      var text = node.nodeValue, from = 0, at;
      while ((at = text.indexOf("\n", from)) >= 0) {
        if (started) { range.setEnd(node, at); return range; }
        if (--skip === 0) { range.setStart(node, at + 1); started = true; }
        from = at + 1;
      }
    }
    if (!started) return null;
    range.setEnd(log, log.childNodes.length);
    return range;
  }
  function wantedLine() {
    var m = /^#L(\d+)$/.exec(window.location.hash);
    return m ? Number(m[1]) : null;
  }
  var scrolledTo = null;
  function highlightLine(scroll) {
    var n = wantedLine(), shown = detail(), log = shown && shown.querySelector("pre.log");
    var note = document.getElementById("line-note");
    if (!n || !log) { if (window.CSS && CSS.highlights) CSS.highlights.delete("log-line"); if (note) note.textContent = ""; return; }
    var range = lineRange(log, n);
    if (note) {
      note.textContent = range ? "line " + n + " (linked)" :
        (n < Number(log.dataset.firstLine || 1) ? "line " + n + " is in the earlier output: load earlier to see it" : "line " + n + " is not written yet");
    }
    if (!range) return;
    if (window.CSS && CSS.highlights && window.Highlight) CSS.highlights.set("log-line", new Highlight(range));
    if (scroll || scrolledTo !== n) {
      var box = range.getBoundingClientRect(), logBox = log.getBoundingClientRect();
      log.scrollTop += box.top - logBox.top - log.clientHeight / 3;
      log.scrollIntoView({ block: "nearest" });
      scrolledTo = n;
    }
  }
  document.addEventListener("click", function (event) {
    var log = logOf(event.target);
    if (!log || String(window.getSelection()).length) return;  // selecting text, not pointing at a line
    var caret = caretAt(event.clientX, event.clientY);
    if (!caret || !log.contains(caret.node)) return;
    var n = lineNumberAt(log, caret.node, caret.offset);
    var url = new URL(window.location.href);
    var shown = detail();
    if (shown && shown.dataset.task) url.searchParams.set("task", shown.dataset.task);
    url.hash = "L" + n;
    window.history.replaceState(window.history.state, "", url);
    highlightLine(true);
  });
  window.addEventListener("hashchange", function () { highlightLine(true); });
  // "load earlier" prepended a window: the log's lines now count from its first line.
  document.addEventListener("htmx:afterSwap", function (event) {
    var log = event.target;
    if (!log.matches || !log.matches("pre.log")) return;
    var earlier = log.querySelector("span.earlier[data-first-line]");
    if (earlier) log.dataset.firstLine = earlier.dataset.firstLine;
    highlightLine(false);
  });

  function start() {
    showTab(params().get("tab") || "tasks");
    var stored = null;
    try { stored = window.localStorage.getItem(VIEW_KEY); } catch (e) { /* no storage */ }
    showView(stored || "list");
    markSelected();
    highlightLine(true);
    var row = document.querySelector(".task-row[aria-current]");
    if (row && row.scrollIntoViewIfNeeded) row.scrollIntoViewIfNeeded();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
