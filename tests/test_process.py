"""Worker processes end when their own process ends, whatever their children do."""
from __future__ import annotations

import asyncio
import sys
import time

from orchestration.workers.base import Invocation
from orchestration.workers.process import run_process
from tests.engine.test_executor import process_alive


def run(code: str, timeout: float = 30):
    lines: list[str] = []
    invocation = Invocation(argv=[sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin"}, cwd=".")
    started = time.monotonic()
    result = asyncio.run(run_process(invocation, lines.append, lines.append, timeout=timeout, kill_grace=1))
    return result, lines, time.monotonic() - started


def test_a_task_that_leaves_a_background_child_ends_when_it_exits_and_the_child_is_killed(tmp_path):
    pid_file = tmp_path / "child"
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen(['sleep', '300'])\n"  # inherits stdout, outlives its parent
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('parent done')\n"
    )
    result, lines, elapsed = run(code, timeout=60)
    assert result.exit_code == 0 and not result.timed_out and lines == ["parent done"]
    assert elapsed < 30, "the run waited for the background child"
    assert not process_alive(int(pid_file.read_text()))


def test_a_child_that_left_the_process_group_does_not_hold_the_task_open(tmp_path):
    code = "import subprocess; subprocess.Popen(['setsid', 'sleep', '5']); print('bye')"
    result, lines, elapsed = run(code, timeout=60)
    assert result.exit_code == 0 and "bye" in lines
    assert elapsed < 4
