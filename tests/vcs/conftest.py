"""A scratch git repository for workspace plans."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` (identity fixed) and return its stdout."""
    done = subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args], cwd=repo,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository on branch main with app.py (20 lines), old.txt, moved.txt and README.md."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("".join(f"line {i}\n" for i in range(1, 21)))
    (path / "old.txt").write_text("to be deleted\n")
    (path / "moved.txt").write_text("".join(f"stable content {i}\n" for i in range(10)))
    (path / "README.md").write_text("# Demo\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    return path
