"""Fixtures of the worker tests (the fake model server and the agent CLIs are in tests/conftest.py)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_NAMES = ("claude", "codex", "gemini")


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
