"""The README's script for the HTTP API, run as written against the running app with a token made
in the browser: it finds the example plan, starts a run, waits for it and exits 0."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.browser.test_mcp_http import make_token

pytestmark = pytest.mark.browser

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_api_script() -> str:
    """The README's `sh` block that starts a run over the API and waits for its verdict."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.DOTALL)
    [script] = [b for b in blocks if "TOKEN=mbx_..." in b and "/runs/$RUN" in b]
    return script


def test_the_readmes_api_script_starts_a_run_and_waits_for_its_verdict(page, stack, tmp_path):
    token = make_token(page, stack.url)
    script = readme_api_script().replace("TOKEN=mbx_...", f"TOKEN={token}").replace("http://127.0.0.1:8000", stack.url)
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and re.fullmatch(r"run \d+: succeeded\n", done.stdout), (done.stdout, done.stderr)

    bad = script.replace('-d \'{"inputs": {}}\'', '-d \'{"inputs": {"ticket": "ABC-1"}}\'')
    refused = subprocess.run(["sh", "-c", bad], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert refused.returncode != 0 and "this plan has no input 'ticket'" in refused.stderr, (refused.stdout, refused.stderr)
