"""How long Chromium takes to draw a plan's DAG (static/magicbox/dag.js), on a plan page and a run page.

For each size (default 100, 150, 500 and 2,000 tasks, 2,000 being the most a plan may hold), with
and without phases (8 phases of consecutive layers), it makes a plan of shell tasks in layers of
25 (tests/large_plans.py; each task depends on up to three of the layer before, and a contract
joins the first task to the last), computes its DAG data as the server does
(orchestration.plans.shape.dag_data) and loads, in headless Chromium (/usr/bin/chromium, through
Playwright), a page holding that data, app.css, the vendored dagre and dag.js:

- plan: as the plan page and the editor (no states);
- run: as the run page: states for every task (40% succeeded, some failed and running, the
  rest pending), a task row per task (.task-row[data-task][data-state]) and the timeline's
  data-critical.

draw is the time from DOMContentLoaded (when dag.js draws) until the drawing is laid out and a
frame has been painted (two animation frames later), in seconds. recolour (run pages only) is
the time dag.js takes, after a websocket message, to bring the nodes to the rows' states and the
critical path to the timeline's, with a tenth of the rows changed: the median of 10 messages,
in milliseconds. A draw that takes longer than --timeout seconds is shown as "> timeout".

It prints a table of median (min–max) over --repeat page loads, each a fresh page:

    .venv/bin/python bench/dag_draw.py [--sizes 100,150,500,2000] [--repeat 5] [--timeout 120]
"""
from __future__ import annotations

import argparse
import html
import json
import os
import sys
import tempfile
from pathlib import Path

from spread import spread as median_spread  # bench/spread.py (this script's directory is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.large_plans import layered_plan  # noqa: E402 (after the path is set)

CHROMIUM = "/usr/bin/chromium"
PHASES = 8

# Runs first at DOMContentLoaded (registered before the deferred dag.js registers its own).
START = "<script>document.addEventListener('DOMContentLoaded', function () { window.benchStart = performance.now(); });</script>"
# Runs after dag.js's DOMContentLoaded handler (registered after it): lays out, waits for a paint.
PROBE = """document.addEventListener("DOMContentLoaded", function () {
  var svg = document.querySelector("svg.dag");
  if (svg) svg.getBoundingClientRect();
  requestAnimationFrame(function () { requestAnimationFrame(function () {
    window.benchDrawn = (performance.now() - window.benchStart) / 1000;
  }); });
});"""
# Changes a tenth of the rows' states (and the timeline's critical path), then times the
# handlers of one websocket message; the median of 10 messages, in milliseconds.
RECOLOUR = """() => {
  var rows = Array.prototype.slice.call(document.querySelectorAll(".task-row[data-task]"));
  var states = ["running", "succeeded", "failed", "pending"], times = [];
  var timeline = document.getElementById("timeline");
  for (var m = 0; m < 10; m++) {
    for (var i = m; i < rows.length; i += 10) rows[i].dataset.state = states[(i + m) % states.length];
    var critical = timeline.dataset.critical.split(" ");
    timeline.dataset.critical = critical.slice(m % 2).join(" ");
    var began = performance.now();
    document.dispatchEvent(new Event("htmx:wsAfterMessage"));
    var svg = document.querySelector("svg.dag");
    if (svg) svg.getBoundingClientRect();
    times.push(performance.now() - began);
  }
  times.sort(function (a, b) { return a - b; });
  return (times[4] + times[5]) / 2;
}"""


def states_of(task_ids: list[str]) -> dict[str, str]:
    """A run part way through: 40% succeeded (every 13th failed), the next 5% running, the rest pending."""
    states = {}
    for n, task in enumerate(task_ids):
        share = n / len(task_ids)
        states[task] = ("failed" if n % 13 == 5 else "succeeded") if share < 0.4 else "running" if share < 0.45 else "pending"
    return states


def page_html(data: dict, states: dict[str, str] | None) -> str:
    """A page as the plan page (states None) or the run page draws its DAG on."""
    static = (ROOT / "static").as_uri()
    rows = ""
    if states is not None:
        rows = (f'<div id="timeline" data-critical="{html.escape(" ".join(data["critical"]))}"></div>'
                + "".join(f'<div class="task-row" data-task="{html.escape(t)}" data-state="{s}">{html.escape(t)}</div>'
                          for t, s in states.items()))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{static}/magicbox/app.css">{START}
<script src="{static}/vendor/dagre/dagre.min.js" defer></script>
<script src="{static}/magicbox/dag.js" defer></script>
<script src="probe.js" defer></script></head>
<body><main><div class="dag-wrap" data-dag></div>
<script type="application/json" id="dag-data">{html.escape(json.dumps(data), quote=False)}</script>
<div class="tasks">{rows}</div></main></body></html>"""


def cases(sizes: list[int], folder: Path) -> list[dict]:
    """The pages to measure: {tasks, phases, page, path}, written into `folder`."""
    from orchestration.plans.loader import load_plan
    from orchestration.plans.shape import dag_data

    (folder / "probe.js").write_text(PROBE)
    found = []
    for size in sizes:
        for phases in (0, PHASES):
            spec = load_plan(json.dumps(layered_plan(size, phases=phases, contract=True)))
            for kind in ("plan", "run"):
                states = states_of([t["id"] for t in spec["tasks"]]) if kind == "run" else None
                path = folder / f"{size}-{phases}-{kind}.html"
                path.write_text(page_html(dag_data(spec, states), states))
                found.append({"tasks": size, "phases": phases, "page": kind, "path": path})
    return found


def measure(case: dict, browser, repeat: int, timeout: float) -> dict:
    """Draw `case` `repeat` times, each on a fresh page; draw seconds (None: over the timeout)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    result = {**case, "draw": [], "recolour": [], "nodes": 0}
    for _ in range(repeat):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        try:
            page.goto(case["path"].as_uri())
            page.wait_for_function("() => window.benchDrawn !== undefined", timeout=timeout * 1000)
            result["draw"].append(page.evaluate("() => window.benchDrawn"))
            result["nodes"] = page.evaluate("() => document.querySelectorAll('svg.dag g.dag-node').length")
            if case["page"] == "run":
                result["recolour"].append(page.evaluate(RECOLOUR))
        except PlaywrightTimeout:
            result["draw"].append(None)
            break  # the next loads would time out as well
        finally:
            context.close()
    return result


def spread(values: list, digits: int = 2, timeout: float = 0) -> str:
    """median (min–max) of `values`; "> timeout s" if one of them timed out (None)."""
    if None in values:
        return f"> {timeout:.0f} s"
    return median_spread(values, digits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,150,500,2000", help="comma-separated task counts (at most 2000 each)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120, help="seconds a draw may take before it counts as too slow")
    args = parser.parse_args()
    os.environ["MAGICBOX_DATA_DIR"] = tempfile.mkdtemp(prefix="magicbox-dag-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "magicbox_web.settings")
    import django

    django.setup()
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory(prefix="magicbox-dag-pages-") as folder, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                             "--allow-file-access-from-files"])
        for case in cases([int(s) for s in args.sizes.split(",")], Path(folder)):
            rows.append(measure(case, browser, args.repeat, args.timeout))
            print(".", end="", file=sys.stderr, flush=True)
        browser.close()
    print(file=sys.stderr)
    print(f"DAG drawing in headless Chromium, {args.repeat} repeats: median (min–max)")
    print("| tasks | phases | page | nodes drawn | draw (s) | recolour after a message (ms) |")
    print("|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['tasks']} | {r['phases'] or '–'} | {r['page']} | {r['nodes']} | {spread(r['draw'], timeout=args.timeout)} | "
              f"{spread(r['recolour'], digits=1)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
