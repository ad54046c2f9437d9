"""The whole Magic Box stack for a bench: `manage.py serve` (daphne, one worker process, the
embedded Redis) on a fresh data directory, a logged-in session, runs of one-task plans, the
processes' CPU and memory from /proc, and a minimal websocket client (RFC 6455, text frames).

Used by bench/live.py and bench/output.py; this module sets MAGICBOX_DATA_DIR and sets Django up
in the bench's own process (same SQLite database and Redis socket as the stack it starts).
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIB = 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Stack:
    """`manage.py serve --workers 1` on a temporary data directory, until stop()."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="magicbox-bench-")
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
        env.update(extra_env or {}, MAGICBOX_DATA_DIR=self.data_dir)
        self.log = open(Path(self.data_dir) / "serve.log", "w")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(self.port), "--workers", "1", "--no-examples"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/schema/plan.json", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("manage.py serve did not come up: " + (Path(self.data_dir) / "serve.log").read_text())
                time.sleep(0.1)
        os.environ["MAGICBOX_DATA_DIR"] = self.data_dir
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "magicbox_web.settings")
        for name in ("REDIS_URL", "DATABASE_URL"):
            os.environ.pop(name, None)
        import django

        django.setup()
        self.web_pid = self._child("daphne")
        self.worker_pid = self._child("runworker")
        self.cookie = self._log_in()

    def _child(self, word: str) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for pid in _descendants(self.proc.pid):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if any(word.encode() in part for part in cmdline):
                    return pid
            time.sleep(0.1)
        raise SystemExit(f"no {word} process under serve")

    def _log_in(self) -> str:
        from django.contrib.auth import get_user_model
        from django.test import Client

        client = Client()
        client.force_login(get_user_model().objects.get(username="admin"))
        return client.cookies["sessionid"].value

    def start_run(self, name: str, command: list[str]) -> tuple[int, int]:
        """Import a one-task plan running `command` (a shell task) and start it. Returns
        (run id, task run id)."""
        from orchestration.engine.scheduler import start_run
        from orchestration.plans.store import import_text

        spec = {"name": name, "parallel_execution": {"tasks": [{"id": "t", "worker": "shell", "command": command}]}}
        revision, _ = import_text(json.dumps(spec), f"{name}.json")
        run = start_run(revision.plan)
        return run.pk, run.task_runs.get().pk

    def wait_finished(self, run_id: int, timeout: float = 300) -> None:
        from orchestration.models import Run

        deadline = time.monotonic() + timeout
        while not Run.objects.get(pk=run_id).is_finished:
            if time.monotonic() > deadline:
                raise SystemExit(f"run {run_id} did not finish within {timeout} s")
            time.sleep(0.05)

    def get(self, path: str) -> int:
        """GET `path` with the session; returns the body's size in bytes (read and dropped)."""
        request = urllib.request.Request(self.url + path, headers={"Cookie": f"sessionid={self.cookie}"})
        size = 0
        with urllib.request.urlopen(request, timeout=300) as response:
            while piece := response.read(MIB):
                size += len(piece)
        return size

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    """The process's resident memory (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"process {pid} has no VmRSS")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


class WebSocket:
    """A websocket client: connect(), send(text), recv() -> text or None once closed."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str, cookie: str) -> WebSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=64 * MIB)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
                      f"Cookie: sessionid={cookie}\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise SystemExit(f"websocket {path} refused: {head[:200]!r}")
        return cls(reader, writer)

    async def send(self, text: str) -> None:
        self._frame(0x1, text.encode())
        await self.writer.drain()

    def _frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + mask + masked)

    async def recv(self) -> str | None:
        parts: list[bytes] = []
        while True:
            try:
                b0, b1 = await self.reader.readexactly(2)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            length = b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(length)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                return None
            if opcode == 0x9:
                self._frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1, 0x2):
                parts.append(payload)
                if b0 & 0x80:
                    return b"".join(parts).decode("utf-8", "replace")

    def close(self) -> None:
        self.writer.close()
