"""Find and kill the processes of one task attempt, even those that left its process group.

Every process an attempt of background work starts (a task's worker, a check's command, an
integration's check) has MAGICBOX_ATTEMPT=<installation>/<owner>/<kind>-<id>/<attempt> in its
environment, and children inherit it. Killing the process group covers what stays in the
group; a scan of /proc for that variable also finds what called setsid() (daemons, some agent
tool runners), and, after the worker process that ran the attempt was itself killed (SIGKILL,
OOM) or hung, the attempt's orphans, which would otherwise go on changing files while the task
is retried (engine.work.kill_orphans). Linux only; elsewhere the scan finds nothing.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path

MARKER = "MAGICBOX_ATTEMPT"


def marker(installation: str, owner: str, item: str, attempt: int) -> str:
    """The MAGICBOX_ATTEMPT value of attempt `attempt` of `item` ("task-run-7") run by `owner`
    ("host:pid:n", see engine.runtime.Engine) for the installation (its database) named
    `installation`: "<installation>/<owner>/<item>/<attempt>"."""
    return f"{installation}/{owner}/{item}/{attempt}"


def parse_marker(value: str) -> tuple[str, str, str, int] | None:
    """(installation, owner, item, attempt) of a MAGICBOX_ATTEMPT value; None if it is not one."""
    parts = value.split("/")
    if len(parts) != 4 or not parts[3].isdecimal():
        return None
    return parts[0], parts[1], parts[2], int(parts[3])


def all_marked(installation: str) -> dict[str, list[int]]:
    """{MAGICBOX_ATTEMPT value: pids} of this host's (readable) processes marked by `installation`."""
    prefix = f"{MARKER}={installation}/".encode()
    found: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for variable in (entry / "environ").read_bytes().split(b"\0"):
                if variable.startswith(prefix):
                    value = variable.split(b"=", 1)[1].decode("utf-8", "replace")
                    found.setdefault(value, []).append(int(entry.name))
    return found


def this_host() -> str:
    """The host name that owner names of this host's worker processes start with."""
    return socket.gethostname()


def processes_marked(value: str) -> list[int]:
    """Pids of this host's processes whose environment has MAGICBOX_ATTEMPT=`value` (readable ones)."""
    needle = f"{MARKER}={value}\0".encode()
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
    return found


def kill_marked(value: str, pids: list[int] | None = None) -> int:
    """SIGKILL every process of this host marked with `value` (or the given `pids`, found so
    marked). Returns how many were signalled."""
    count = 0
    for pid in processes_marked(value) if pids is None else pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            count += 1
    return count


def owner_gone(owner: str) -> bool:
    """True if `owner` ("host:pid:n") was a process on this host that no longer exists."""
    try:
        host, pid, _ = owner.rsplit(":", 2)
        pid_number = int(pid)
    except ValueError:
        return False
    if host != this_host():
        return False
    try:
        os.kill(pid_number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
