"""Fixtures for tests that run the real agent CLIs: the fake model server and the CLIs from npm.

Registered as a pytest plugin by tests/conftest.py, so every test folder can use them.
"""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.model_server import ModelServer

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_NAMES = ("claude", "codex", "gemini")


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A started fake model server (Anthropic, OpenAI Responses and Gemini APIs) on 127.0.0.1.

    Script it with `.reply(...)` / `.when(...)`; it answers "OK" until told otherwise.
    """
    with ModelServer() as server:
        yield server


@pytest.fixture(scope="session")
def agent_clis() -> Path:
    """The `node_modules/.bin` directory holding claude, codex and gemini, installed if missing.

    The versions are pinned in the repository's package.json / package-lock.json; a missing
    binary triggers `npm ci` in the repository root (which needs npm and the npm registry).
    """
    bin_dir = REPO_ROOT / "node_modules" / ".bin"
    if all((bin_dir / name).exists() for name in CLI_NAMES):
        return bin_dir
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "The agent CLI tests need claude, codex and gemini from npm, and npm is not installed. "
            "Install Node.js 20 or newer with npm, then run `npm ci` in the repository root "
            f"({REPO_ROOT}).",
            pytrace=False,
        )
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`npm ci` in {REPO_ROOT} did not finish within 15 minutes.", pytrace=False)
    missing = [name for name in CLI_NAMES if not (bin_dir / name).exists()]
    if done.returncode != 0 or missing:
        output = (done.stdout + done.stderr).strip()[-3000:]
        pytest.fail(
            f"`npm ci` in {REPO_ROOT} exited with code {done.returncode}"
            + (f" and did not install {', '.join(missing)}" if missing else "")
            + f". Its output:\n{output}",
            pytrace=False,
        )
    return bin_dir


@pytest.fixture
def model(model_server, agent_clis, monkeypatch):
    """The fake model server, with every CLI pointed at it through the server's environment."""
    for cli in CLI_NAMES:
        for name, value in model_server.client_env(cli).items():
            monkeypatch.setenv(name, value)
    return model_server
