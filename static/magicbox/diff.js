// Renders <div class="diff" data-diff="…unified diff…"> with diff2html (side by side or inline,
// syntax coloured by its bundled highlight.js); the choice is remembered in localStorage.
(function () {
  "use strict";
  var KEY = "magicbox.diffFormat";
  function format() { return localStorage.getItem(KEY) || "side-by-side"; }
  function draw(el) {
    if (typeof Diff2HtmlUI === "undefined") return;
    var ui = new Diff2HtmlUI(el, el.dataset.diff, {
      outputFormat: format(), drawFileList: false, matching: "lines", highlight: true,
      fileContentToggle: false, synchronisedScroll: true,
    });
    ui.draw();  // highlights too (highlight: true)
    el.dataset.rendered = format();
  }
  function drawAll(root) {
    (root || document).querySelectorAll("div.diff[data-diff]").forEach(function (el) {
      if (el.dataset.rendered !== format()) draw(el);
    });
    (root || document).querySelectorAll("select.diff-format").forEach(function (s) { s.value = format(); });
  }
  document.addEventListener("htmx:afterSwap", function (e) { drawAll(e.target.parentNode || document); });
  document.addEventListener("change", function (e) {
    if (!e.target.matches("select.diff-format")) return;
    localStorage.setItem(KEY, e.target.value);
    drawAll(document);
  });
  window.addEventListener("load", function () { drawAll(document); });
})();
