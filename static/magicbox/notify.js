// Browser notifications for the run being watched (the Notification API): once asked for with
// the page's "Notify me" button, the page notifies when the run ends or starts waiting for a
// person (a gate or a choice), also while its tab is in the background (its websocket keeps it
// current). The choice is kept for the tab (sessionStorage), per run.
(function () {
  "use strict";
  var button = document.getElementById("notify-me");
  if (!button) return;
  var runId = button.dataset.run, key = "magicbox-notify-run-" + runId;
  var status = document.getElementById("notify-status");
  var seen = null;  // what was last told: the run's state and the tasks waiting for a person

  function say(text) { if (status) status.textContent = text; }
  function snapshot() {
    var header = document.getElementById("run-header");
    var waiting = Array.prototype.map.call(document.querySelectorAll(".gate-waiting[data-task]"), function (el) { return el.dataset.task; });
    return { state: header ? header.dataset.state : "", waiting: waiting };
  }
  function notify(title, body, tag) {
    var note = new Notification(title, { body: body, tag: tag });
    note.onclick = function () { window.focus(); note.close(); };
  }
  function check() {
    if (sessionStorage.getItem(key) !== "on" || !("Notification" in window) || Notification.permission !== "granted") return;
    var now = snapshot();
    if (seen) {
      var ended = ["succeeded", "failed", "cancelled"];
      if (now.state !== seen.state && ended.indexOf(now.state) !== -1) {
        notify("Run #" + runId + " " + now.state, document.title, "run-" + runId + "-end");
      }
      now.waiting.forEach(function (task) {
        if (seen.waiting.indexOf(task) === -1) notify("Run #" + runId + " needs you", task + " waits for a decision", "run-" + runId + "-" + task);
      });
    }
    seen = now;
    sessionStorage.setItem(key + "-seen", JSON.stringify(seen));  // a reload (a decision posted) compares with it
  }
  function enabled(earlier) {
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Notifying";
    say("You will be notified when this run ends or waits for a person, even with this tab in the background.");
    seen = earlier || snapshot();
    check();
  }

  button.addEventListener("click", function () {
    if (!("Notification" in window)) { say("This browser cannot show notifications."); return; }
    if (sessionStorage.getItem(key) === "on") {
      sessionStorage.removeItem(key);
      button.setAttribute("aria-pressed", "false");
      button.textContent = "Notify me";
      say("");
      return;
    }
    Notification.requestPermission().then(function (permission) {
      if (permission === "granted") { sessionStorage.setItem(key, "on"); enabled(); }
      else if (permission === "denied") say("Notifications are blocked for this site: allow them in the browser's site settings, then try again.");
      else say("The browser did not get an answer: click Notify me again and choose Allow.");
    });
  });
  if (sessionStorage.getItem(key) === "on" && "Notification" in window && Notification.permission === "granted") {
    var earlier = null;
    try { earlier = JSON.parse(sessionStorage.getItem(key + "-seen")); } catch (e) { earlier = null; }
    enabled(earlier);  // what changed while the page reloaded is told too
  }
  document.addEventListener("htmx:wsAfterMessage", check);
})();
