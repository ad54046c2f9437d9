"""Fixtures of the worker tests: the fake model server and the real agent CLIs from npm."""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
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


RECORDINGS = Path(__file__).resolve().parent / "recordings"


@pytest.fixture
def recording() -> Callable[[str], list[str]]:
    """Load a recorded event stream: `recording("claude-text")` -> its stdout lines (no newlines).

    The recordings are the stdout of the real CLIs (claude 2.1.197, codex 0.171.0, gemini 0.61.0),
    each run once with `test_cli_end_to_end.run_cli` against tests.fakes.model_server scripted as:
    `<cli>-text`: Text("The capital of France is Paris."); `<cli>-write-file`: WriteFile("src/greet.py",
    ..., then="I wrote src/greet.py."); `<cli>-api-error-500` / `-400`: Fail(status, "The model is
    on fire."); `codex-write-file-with-shell`: the same WriteFile with CODEX_MODEL=local-model.
    Exit codes were 0 / 0 / 1 / 1 for claude and codex, 0 / 0 / 244 / 144 for gemini.
    """

    def load(name: str) -> list[str]:
        return (RECORDINGS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()

    return load


@pytest.fixture
def stand_in_clis(tmp_path: Path) -> Path:
    """A directory of do-nothing executables named claude, codex and gemini (for build() tests)."""
    bin_dir = tmp_path / "stand-in-bin"
    bin_dir.mkdir()
    for name in CLI_NAMES:
        program = bin_dir / name
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o755)
    return bin_dir


@pytest.fixture
def task_dirs(tmp_path: Path) -> dict[str, Path]:
    """Empty work, home, tmp and upstream directories, as the engine makes them for an attempt."""
    dirs = {name: tmp_path / "attempt" / name for name in ("work", "home", "tmp", "upstream")}
    for directory in dirs.values():
        directory.mkdir(parents=True)
    return dirs
