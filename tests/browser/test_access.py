"""What a page owes every reader: state badges legible to WCAG AA, computed by the browser from
the stylesheet the pages use."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

STATES = ["queued", "pending", "running", "succeeded", "failed", "timed_out", "cancelled", "skipped",
          "passed", "unverified"]

CONTRAST = """(states) => {
  const luminance = (rgb) => {
    const [r, g, b] = rgb.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map((c) => {
      c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const out = {};
  for (const state of states) {
    const badge = document.createElement("span");
    badge.className = `state state-${state}`;
    badge.textContent = state;
    document.body.appendChild(badge);
    const style = getComputedStyle(badge);
    const [a, b] = [luminance(style.color), luminance(style.backgroundColor)];
    out[state] = { ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), background: style.backgroundColor };
    badge.remove();
  }
  return out;
}"""


def test_every_state_badge_has_its_own_colour_and_aa_contrast(page, stack):
    page.goto(f"{stack.url}/runs/")
    found = page.evaluate(CONTRAST, STATES)
    low = {state: round(v["ratio"], 2) for state, v in found.items() if v["ratio"] < 4.5}
    assert not low, f"badges below WCAG AA (4.5:1): {low}"
    task_states = ["queued", "running", "succeeded", "failed", "timed_out", "cancelled", "skipped"]
    colours = [found[state]["background"] for state in task_states]
    assert len(set(colours)) == len(colours), dict(zip(task_states, colours))
