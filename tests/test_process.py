"""Worker processes end when their own process ends, whatever their children do."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from orchestration.workers.base import Invocation
from orchestration.workers.process import run_process
from tests.conftest import process_alive, wait_until


def run(code: str, timeout: float = 30):
    lines: list[str] = []
    invocation = Invocation(argv=[sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin"}, cwd=".")
    started = time.monotonic()
    result = asyncio.run(run_process(invocation, lines.append, lines.append, timeout=timeout, kill_grace=1, confinement=None))
    return result, lines, time.monotonic() - started


def test_a_task_that_leaves_a_background_child_ends_when_it_exits_and_the_child_is_killed(tmp_path):
    pid_file = tmp_path / "child"
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen(['sleep', '300'])\n"  # inherits stdout, outlives its parent
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('parent done')\n"
    )
    result, lines, elapsed = run(code, timeout=600)
    assert result.exit_code == 0 and not result.timed_out and lines == ["parent done"]
    assert elapsed < 150, "the run waited for the background child (it sleeps 300 s)"
    wait_until(lambda: not process_alive(int(pid_file.read_text())), 10, "the background child to be killed")


def test_a_child_that_left_the_process_group_does_not_hold_the_task_open(tmp_path):
    pid_file = tmp_path / "child"
    code = (f"import subprocess; child = subprocess.Popen(['setsid', 'sleep', '300']); "
            f"open({str(pid_file)!r}, 'w').write(str(child.pid)); print('bye')")
    try:
        result, lines, elapsed = run(code, timeout=600)
        assert result.exit_code == 0 and "bye" in lines
        assert elapsed < 150, "the run waited for the child that holds its output open (it sleeps 300 s)"
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
