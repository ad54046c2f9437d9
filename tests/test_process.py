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


def run_to_file(code: str, stdout_dir, timeout: float = 60):
    lines: list[str] = []
    invocation = Invocation(argv=[sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin"}, cwd=".", stdout_dir=stdout_dir)
    result = asyncio.run(run_process(invocation, lines.append, lines.append, timeout=timeout, kill_grace=1, confinement=None))
    return result, lines


def test_stdout_to_a_file_arrives_whole_when_the_process_exits_right_after_a_large_write(tmp_path):
    code = ("import os, sys\n"
            "os.write(1, b'{\"big\": \"' + b'x' * 3_000_000 + b'\"}\\nlast line')\n"
            "sys.stderr.write('err\\n')\n"
            "os._exit(0)\n")
    spool = tmp_path / "spool"
    spool.mkdir()
    result, lines = run_to_file(code, spool)
    assert result.exit_code == 0
    assert sorted(lines, key=len) == ["err", "last line", '{"big": "' + "x" * 3_000_000 + '"}']
    assert list(spool.iterdir()) == [], "the stdout file was left on disk"


def test_stdout_to_a_file_is_followed_as_it_grows(tmp_path):
    go_on = tmp_path / "go-on"
    code = (f"import os, time\nprint('first', flush=True)\n"
            f"while not os.path.exists({str(go_on)!r}): time.sleep(0.01)\n"
            "print('second', end='')\n")
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        if line == "first":
            go_on.touch()  # only once "first" was read while the process still runs

    invocation = Invocation(argv=[sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin"}, cwd=".",
                            stdout_dir=tmp_path)
    result = asyncio.run(run_process(invocation, on_line, on_line, timeout=60, kill_grace=1, confinement=None))
    assert result.exit_code == 0 and lines == ["first", "second"]


def test_stdout_to_a_file_replaces_invalid_utf8_and_still_times_out(tmp_path):
    code = "import os, time\nos.write(1, b'bad \\xff byte\\n')\ntime.sleep(300)\n"
    result, lines = run_to_file(code, tmp_path, timeout=2)
    assert result.timed_out and result.exit_code is None
    assert lines == ["bad \ufffd byte"]
