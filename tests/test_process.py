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


def test_a_run_cancelled_twice_still_kills_a_process_that_ignores_sigterm(tmp_path):
    # An engine stopping cancels its work, and the work's own guard cancels it again: the kill
    # (SIGTERM, then SIGKILL after the grace) must still be seen through to the end.
    pid_file = tmp_path / "pid"
    code = (f"import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(300)")
    invocation = Invocation(argv=[sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin"}, cwd=".")

    async def cancel_twice() -> bool:
        running = asyncio.ensure_future(run_process(invocation, print, print, timeout=600, kill_grace=1, confinement=None))
        while not pid_file.exists() or not pid_file.read_text():
            await asyncio.sleep(0.02)
        running.cancel()
        await asyncio.sleep(0.1)  # the first cancel has reached the kill (this is not synchronisation)
        running.cancel()
        try:
            await asyncio.wait_for(running, 60)
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(cancel_twice()), "the run was cancelled"
    assert not process_alive(int(pid_file.read_text())), "the process that ignores SIGTERM outlived its cancelled run"


def test_a_process_reaped_behind_the_child_watchers_back_still_ends_its_run(monkeypatch):
    # Something else in the worker process reaps the child first (as Popen.poll does) and the
    # exit is never reported: the run ends all the same, with the status asyncio's watchers
    # give such a child, instead of waiting for ever.
    import threading

    from orchestration.workers import process

    monkeypatch.setattr(process, "REPORT_WAIT", 0.5)
    process._use_pidfd_watcher()
    watcher_class = type(asyncio.get_event_loop_policy().get_child_watcher())

    def reap_and_say_nothing(self, pid, callback, *args):
        threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True).start()

    monkeypatch.setattr(watcher_class, "add_child_handler", reap_and_say_nothing)
    invocation = Invocation(argv=[sys.executable, "-c", "import sys; print('done'); sys.exit(3)"], env={"PATH": "/usr/bin:/bin"}, cwd=".")
    lines: list[str] = []

    async def go():
        return await asyncio.wait_for(run_process(invocation, lines.append, lines.append, timeout=600, kill_grace=1, confinement=None), 60)

    result = asyncio.run(go())
    assert lines == ["done"] and result.exit_code in (3, 255) and not result.timed_out, (lines, result)
