"""Start one worker process and stream its output: argv, explicit env, own process group, timeout.

Output is read in chunks and split into lines here rather than with StreamReader.readline, so a
single JSON line of many megabytes (agent CLIs emit them) never trips asyncio's line limit.
Invalid UTF-8 is replaced, never raised.

stdout is a pipe, or, when the Invocation names a `stdout_dir`, an unnamed regular file there that
is followed as it grows: a CLI that exits with a large write still pending on a pipe loses all
but its first 64 KiB (anthropics/claude-code#77112), while a write to a regular file is whole.
"""
from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import logging
import math
import signal
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from orchestration.workers import sandbox
from orchestration.workers.base import Invocation
from orchestration.workers.sandbox import Confinement
from orchestration.workers.tail import Tail

READ_CHUNK = 256 * 1024  # bytes read from a pipe at once
MAX_LINE = 64 * 1024 * 1024  # bytes; a longer line is delivered in pieces of this size
STDERR_TAIL = 8 * 1024  # characters of stderr kept for the error message
FILE_POLL = 0.05  # seconds between looks at a stdout file that has not grown
REPORT_WAIT = 5.0  # seconds to wait for the child watcher's report of an exit already seen
KILL_WAIT = 30.0  # seconds to wait for a process's end after SIGKILL


@dataclass
class ProcessResult:
    """How the process ended. exit_code is None when it was killed for a timeout."""

    exit_code: int | None
    timed_out: bool
    stderr_tail: str


class _PidfdWatcher(asyncio.AbstractChildWatcher):
    """Python 3.12's PidfdChildWatcher, for 3.11: a child is reaped by the event loop that
    started it the moment its pidfd (pidfd_open(2)) becomes readable, with no thread per child
    (3.11's default ThreadedChildWatcher starts one for every process, a cost paid on every
    task's start). Works with any running loop in any thread, as the threaded watcher does."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def is_active(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def attach_loop(self, loop) -> None:
        pass

    def add_child_handler(self, pid: int, callback, *args) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        loop._add_reader(pidfd, self._do_wait, pid, pidfd, callback, args)  # noqa: SLF001 — as asyncio's own watchers

    def _do_wait(self, pid: int, pidfd: int, callback, args) -> None:
        asyncio.get_running_loop()._remove_reader(pidfd)  # noqa: SLF001
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped elsewhere
            returncode = 255
            logging.getLogger(__name__).warning("child process %d was reaped elsewhere: reporting exit status 255", pid)
        else:
            returncode = os.waitstatus_to_exitcode(status)
        os.close(pidfd)
        callback(pid, returncode, *args)

    def remove_child_handler(self, pid: int) -> bool:
        return True


_watcher_checked = False


def _use_pidfd_watcher() -> None:
    """Make asyncio reap children through pidfds on Python 3.11 when the kernel has them (3.12
    does so by default); once per process."""
    global _watcher_checked
    if _watcher_checked:
        return
    _watcher_checked = True
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # a kernel before 5.3, or pidfds refused: keep the threaded watcher
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.get_event_loop_policy().set_child_watcher(_PidfdWatcher())


class _Progress:
    """Bytes read so far from a process's pipes, and how many readers wait for room to store
    what they read (to tell a slow drain from a stuck one)."""

    bytes_read = 0
    pacing = 0


async def _pipe_chunks(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The bytes of a pipe, in chunks, until it closes."""
    while chunk := await stream.read(READ_CHUNK):
        yield chunk


async def _file_chunks(fd: int, ended: asyncio.Event) -> AsyncIterator[bytes]:
    """The bytes of a regular file another process is writing, in chunks, as it grows.

    Reads from offset 0 with pread (the writer's file offset is left alone), looking again every
    FILE_POLL seconds while nothing new is there; once `ended` is set (every writer is gone),
    reads what is left up to the end of the file and stops.
    """
    offset = 0
    while True:
        finished = ended.is_set()  # before reading: what was written before the end is read below
        chunk = os.pread(fd, READ_CHUNK, offset)
        if chunk:
            offset += len(chunk)
            yield chunk
        elif finished:
            return
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), FILE_POLL)


async def _pump(chunks: AsyncIterator[bytes], on_line: Callable[[str], None], progress: _Progress,
                pace: Callable[[], Awaitable[None]] | None = None) -> None:
    """Call on_line with each line of `chunks` (see the module docstring); after each chunk, wait
    for `pace()` when given (backpressure: the pipe or file is not read meanwhile)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    partial: list[str] = []  # the current unfinished line, in pieces (no quadratic joining)
    size = 0
    async for chunk in chunks:
        progress.bytes_read += len(chunk)
        pieces = decoder.decode(chunk).split("\n")
        if len(pieces) > 1:
            partial.append(pieces[0])
            on_line("".join(partial).removesuffix("\r"))
            for line in pieces[1:-1]:
                on_line(line.removesuffix("\r"))
            partial, size = [pieces[-1]], len(pieces[-1])
        else:
            partial.append(pieces[0])
            size += len(pieces[0])
        if size > MAX_LINE:
            joined = "".join(partial)
            on_line(joined[:MAX_LINE])
            partial, size = [joined[MAX_LINE:]], len(joined) - MAX_LINE
        if pace is not None:
            progress.pacing += 1
            try:
                await pace()
            finally:
                progress.pacing -= 1
    rest = "".join(partial) + decoder.decode(b"", final=True)
    if rest:
        on_line(rest.removesuffix("\r"))


def kill_group(pid: int, sig: int) -> None:
    """Send `sig` to the process group led by `pid`; a group already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class _Child:
    """A started process and, on Linux, a pidfd (pidfd_open(2)) opened for it at its start and
    kept until it has been seen to end: the pidfd stays bound to this process even once its pid
    is reaped and reused by another one (pids wrap at /proc/sys/kernel/pid_max, 32768 on many
    machines), which a pid looked up again later is not. pidfd: None without pidfd support."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        try:
            self.pidfd: int | None = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel, not Linux), or it ended and was reaped already
            self.pidfd = None

    def close(self) -> None:
        """Close the pidfd (once the process's end has been seen)."""
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


async def exited(child: _Child) -> int:
    """Wait until the process itself has exited and return its exit status (the negated signal
    number when a signal ended it, as Popen.returncode).

    Process.wait() on Python 3.11 also waits for the pipes to close, so a background child that
    inherited stdout would keep it waiting after the task's own process ended. The child's pidfd
    becomes readable at the exit itself; the status is then read at once with waitid(P_PIDFD,
    WNOWAIT) (waitid(2)), which leaves the process for asyncio's child watcher to reap, so
    nothing waits for the watcher. When the status cannot be read so (the watcher reaped the
    process first, or no P_PIDFD before Linux 5.4), the watcher's report is awaited, for at most
    REPORT_WAIT seconds once the exit is known: a process reaped by someone else is never
    reported, and then 255 is returned (as asyncio's watchers do). Without a pidfd at all (an old
    kernel, not Linux), the watcher's report is awaited however long it takes.
    """
    proc = child.proc
    if proc.returncode is not None:
        return proc.returncode
    loop = asyncio.get_running_loop()
    deadline = math.inf  # without a pidfd the exit is not known: wait for the watcher however long
    if child.pidfd is not None:
        gone = loop.create_future()
        loop.add_reader(child.pidfd, lambda: gone.done() or gone.set_result(None))
        try:
            await gone
        finally:
            loop.remove_reader(child.pidfd)
        status = _exit_status(child.pidfd)
        if status is not None:
            return status
        deadline = loop.time() + REPORT_WAIT
    while proc.returncode is None:  # the watcher sets it a moment after it reaped the process
        if loop.time() > deadline:
            logging.getLogger(__name__).warning("process %d ended but its exit status was never reported "
                                                "(reaped elsewhere): taking 255", proc.pid)
            return 255
        await asyncio.sleep(0.001)
    return proc.returncode


def _exit_status(pidfd: int) -> int | None:
    """The exit status of the exited, unreaped process `pidfd` refers to, without reaping it;
    None when it cannot be read that way (already reaped, or no P_PIDFD before Linux 5.4)."""
    try:
        info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (AttributeError, OSError):  # ChildProcessError: the watcher was first
        return None
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


async def terminate(child: _Child, grace: float) -> None:
    """SIGTERM the process group, wait up to `grace` seconds, then SIGKILL it and wait for the
    process's end (at most KILL_WAIT seconds more: a process stuck in the kernel cannot hold up
    its caller for ever; that is logged)."""
    kill_group(child.proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(exited(child), grace)
    except TimeoutError:
        pass
    kill_group(child.proc.pid, signal.SIGKILL)
    try:
        await asyncio.wait_for(exited(child), KILL_WAIT)
    except TimeoutError:
        logging.getLogger(__name__).error("process %d had not ended %g s after SIGKILL", child.proc.pid, KILL_WAIT)


def _close_pipes(proc: asyncio.subprocess.Process) -> None:
    """Close the process's pipes, read by nobody any more. Only the pipes: closing the whole
    subprocess transport would poll (and so reap) the process behind its child watcher's back
    (asyncio base_subprocess.close calls Popen.poll)."""
    transport = proc._transport  # noqa: SLF001 — asyncio offers no public way to close the pipes
    for fd in (0, 1, 2):
        pipe = transport.get_pipe_transport(fd)
        if pipe is not None:
            pipe.close()


async def run_process(
    invocation: Invocation,
    on_stdout: Callable[[str], None],
    on_stderr: Callable[[str], None],
    timeout: float,
    *,
    confinement: Confinement | None,
    kill_grace: float = 3.0,
    pace: Callable[[], Awaitable[None]] | None = None,
) -> ProcessResult:
    """Run `invocation` to the end, calling on_stdout / on_stderr with each line (no newline).

    confinement: what the process may reach inside the task sandbox (see workers.sandbox); None
    runs it unconfined, as also when an administrator turned the sandbox off. Killing the
    sandbox's bwrap ends every process inside it, daemons included.
    timeout: seconds before the whole process group is killed (SIGTERM, then SIGKILL after
    kill_grace seconds). If the calling asyncio task is cancelled, the group is killed the same
    way before CancelledError propagates. stdout is read from an unnamed regular file in
    invocation.stdout_dir when that is set (see the module docstring), else from a pipe; stderr
    is always a pipe. pace: awaited after each piece read (OutputBuffer.pace): while it waits, the
    output is not read, so a task writing faster than its output is stored waits on its pipe
    (or its file grows on disk) instead of the worker's memory. Raises OSError when the program cannot be started
    (sandbox.SandboxUnavailable, an OSError, when no sandbox can be made here).
    """
    _use_pidfd_watcher()
    argv = invocation.argv
    if confinement is not None and sandbox.enabled():
        argv = await asyncio.to_thread(sandbox.command, argv, invocation.cwd, confinement)
    # An unnamed file: nothing left on disk, no name a task could find and truncate.
    spool = tempfile.TemporaryFile(dir=invocation.stdout_dir) if invocation.stdout_dir else contextlib.nullcontext()
    with spool as stdout_file:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if invocation.stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=stdout_file or asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(invocation.cwd),
            env=invocation.env,
            start_new_session=True,
        )
        stdout_fd = stdout_file.fileno() if stdout_file else None
        child = _Child(proc)
        try:
            return await _follow(child, invocation, stdout_fd, on_stdout, on_stderr, timeout, kill_grace, pace)
        finally:
            child.close()


async def _follow(
    child: _Child,
    invocation: Invocation,
    stdout_fd: int | None,
    on_stdout: Callable[[str], None],
    on_stderr: Callable[[str], None],
    timeout: float,
    kill_grace: float,
    pace: Callable[[], Awaitable[None]] | None = None,
) -> ProcessResult:
    """Feed a started process's output to the line handlers until it ends (see run_process)."""
    proc = child.proc
    stderr_tail = Tail(STDERR_TAIL)

    def keep_stderr(line: str) -> None:
        stderr_tail.add(line)
        on_stderr(line)

    async def feed_stdin() -> None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(invocation.stdin or b"")
            await proc.stdin.drain()
        proc.stdin.close()

    progress = _Progress()
    stdout_ended = asyncio.Event()  # set once no process of the group can write the stdout file
    stdout_chunks = _pipe_chunks(proc.stdout) if stdout_fd is None else _file_chunks(stdout_fd, stdout_ended)
    jobs = [_pump(stdout_chunks, on_stdout, progress, pace), _pump(_pipe_chunks(proc.stderr), keep_stderr, progress, pace)]
    if invocation.stdin is not None:
        jobs.append(feed_stdin())
    pumps = asyncio.gather(*jobs)
    # When the pumps are cancelled below, nobody awaits them: mark their outcome as seen.
    pumps.add_done_callback(lambda future: future.cancelled() or future.exception())
    timed_out = False
    try:
        exit_code: int | None = await asyncio.wait_for(exited(child), timeout)
    except TimeoutError:
        timed_out = True
        exit_code = None
        await terminate(child, kill_grace)
    except asyncio.CancelledError:
        # The kill is seen through even when cancelled again meanwhile (it is bounded: see
        # terminate), so no process outlives its cancelled caller and the pidfd is not closed
        # under it.
        ending = asyncio.ensure_future(terminate(child, kill_grace))
        while not ending.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(ending)
        pumps.cancel()
        _close_pipes(proc)
        raise
    # Whatever the task left running in its group (background children) goes with it, so the
    # pipes close and nothing outlives the task.
    kill_group(proc.pid, signal.SIGKILL)
    stdout_ended.set()
    # Read what is left in the pipes. They close once every writer is gone; only a process that
    # left the group (it called setsid) can keep one open, so stop when reading stalls.
    while not pumps.done():
        before = progress.bytes_read
        try:
            await asyncio.wait_for(asyncio.shield(pumps), kill_grace)
        except TimeoutError:
            if progress.bytes_read == before and not progress.pacing:
                pumps.cancel()
                _close_pipes(proc)
                break
    if pumps.done() and not pumps.cancelled() and pumps.exception() is not None:
        raise pumps.exception()  # a line handler failed: a bug, not the task's fault
    return ProcessResult(exit_code=exit_code, timed_out=timed_out, stderr_tail=stderr_tail.text())
