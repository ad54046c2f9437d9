"""This host's processes as tests and benchmarks look for them (from /proc; Linux)."""
from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (a killed orphan may wait to be reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def processes_with(token: str) -> list[int]:
    """Pids (as this host sees them) of live processes whose command line contains `token`.

    Sandboxed tasks live in a PID namespace of their own: the pids they see of themselves mean
    nothing here, so tests find their processes by a word in their argv instead."""
    needle, found = token.encode(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "cmdline").read_bytes() and process_alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def children_of(pid: int) -> dict[int, str]:
    """{pid: command line} of the live processes whose parent is `pid` (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid and process_alive(int(entry.name)):
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                pass
    return found
