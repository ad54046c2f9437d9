// Magic Box page behaviour: live elapsed times, the socket status badge, logs that follow output.
(function () {
  "use strict";

  function fmt(s) {
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60), sec = Math.floor(s % 60);
    if (m < 60) return m + " min " + String(sec).padStart(2, "0") + " s";
    return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " min";
  }

  // Durations of running things tick here; the server sends the final figure when they end.
  setInterval(function () {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = fmt(Math.max(0, now - Number(el.dataset.since)));
    });
  }, 1000);

  // The timeline grows with the clock while the run goes on: bars still going reach "now", and
  // every bar, the span and the time axis are scaled to the span so far (review/timeline.py
  // renders the same from the server's clock; this keeps it right between pushes).
  var TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400];
  function growTimeline() {
    var tl = document.getElementById("timeline");
    if (!tl || tl.dataset.end || !tl.dataset.start) return;
    var start = Number(tl.dataset.start), now = Date.now() / 1000, end = now;
    var bars = tl.querySelectorAll(".tl-wait[data-from], .tl-run[data-from]");
    bars.forEach(function (bar) { if (bar.dataset.to) end = Math.max(end, Number(bar.dataset.to)); });
    var span = Math.max(end - start, 0.001);
    var pct = function (t) { return Math.max(0, 100 * (t - start) / span); };
    bars.forEach(function (bar) {
      var from = Number(bar.dataset.from), to = bar.dataset.to ? Number(bar.dataset.to) : now;
      if (!from) return;
      bar.style.left = pct(from) + "%";
      bar.style.width = Math.max(pct(to) - pct(from), bar.classList.contains("tl-run") ? 0.3 : 0) + "%";
    });
    var shown = tl.querySelector(".tl-span");
    if (shown) shown.textContent = fmt(span);
    var axis = tl.querySelector(".tl-ticks");
    if (axis) {
      var step = TICK_STEPS.find(function (s) { return span / s <= 8; }) || TICK_STEPS[TICK_STEPS.length - 1];
      axis.replaceChildren();
      for (var t = 0; t <= span; t += step) {
        var tick = document.createElement("span");
        tick.className = "tl-tick";
        tick.style.left = (100 * t / span) + "%";
        tick.textContent = fmt(t);
        axis.appendChild(tick);
      }
    }
  }
  setInterval(growTimeline, 1000);

  // Reconnect soon after the server comes back (a restart takes seconds): 0.5 s doubling,
  // never more than 10 s apart, jittered so many viewers do not knock at once.
  htmx.config.wsReconnectDelay = function (retryCount) {
    var most = Math.min(10000, 500 * Math.pow(2, retryCount));
    return most / 2 + Math.random() * most / 2;
  };

  function setStatus(text, cls) {
    var el = document.getElementById("socket-status");
    if (el) { el.textContent = text; el.className = "socket " + cls; }
  }
  // The badge is about the connection, never the run's state (a finished run's page stays connected).
  document.addEventListener("htmx:wsOpen", function () { setStatus("connected: live updates", "open"); document.body.dataset.socket = "open"; });
  document.addEventListener("htmx:wsClose", function (event) {
    var code = event.detail && event.detail.event && event.detail.event.code;
    if (code === 4011) { window.location.reload(); return; }  // the server could not keep this page exact
    if (code === 4403) { setStatus("not allowed any more: reload to sign in", "closed"); return; }
    if (code === 4404) { setStatus("this run was deleted", "closed"); document.body.dataset.socket = "closed"; return; }
    setStatus("connection lost: reconnecting…", "closed");
    document.body.dataset.socket = "closed";
    delete document.body.dataset.synced;
    if (code === 4012 && event.detail.socketWrapper) {  // the server lost its message bus for a moment
      setTimeout(event.detail.socketWrapper.reconnect, 500 + Math.random() * 1000);
    }
  });

  // A form with data-confirm="question?" is sent only when the user confirms (no inline handlers:
  // the Content-Security-Policy forbids them).
  document.addEventListener("submit", function (event) {
    var question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // Say state changes to screen readers: the run's and each task's, after every live update.
  function states() {
    var found = {};
    var run = document.getElementById("run-header");
    if (run) found.run = run.dataset.state;
    document.querySelectorAll(".task-row[data-task]").forEach(function (row) { found["task " + row.dataset.task] = row.dataset.state; });
    return found;
  }
  var before = null;
  document.addEventListener("htmx:wsBeforeMessage", function () { before = states(); });
  document.addEventListener("htmx:wsAfterMessage", function () {
    var announcer = document.getElementById("announcer");
    if (!announcer || !before) return;
    var after = states(), said = [];
    Object.keys(after).forEach(function (key) {
      if (before[key] !== undefined && before[key] !== after[key]) said.push(key + ": " + after[key].replace("_", " "));
    });
    if (said.length) announcer.textContent = said.join("; ");
  });

  // Keep a log scrolled to its end while the reader is at its end: through a run page's pushes,
  // and through the swaps of a polled section holding logs (a plan draft's), which replace them.
  var atEnd = {};  // by the log's id
  function noteEnds(within) {
    within.querySelectorAll("pre.log[id]").forEach(function (log) {
      atEnd[log.id] = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    });
  }
  function keepEnds(within) {
    within.querySelectorAll("pre.log[id]").forEach(function (log) {
      if (atEnd[log.id] !== false) log.scrollTop = log.scrollHeight;
    });
  }
  document.addEventListener("htmx:wsBeforeMessage", function () { noteEnds(document); });
  document.addEventListener("htmx:wsAfterMessage", function () {
    document.body.dataset.synced = "true";  // the snapshot after (re)connecting has been applied
    keepEnds(document);
  });
  document.addEventListener("htmx:beforeSwap", function (event) { noteEnds(event.detail.target); });
  document.addEventListener("htmx:afterSwap", function (event) { keepEnds(event.target); });  // the new content
  document.addEventListener("DOMContentLoaded", function () { keepEnds(document); });
})();
