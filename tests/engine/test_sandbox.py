"""Hostile tasks, each contained by the task sandbox: what a plan's author could try from a task.

Every probe also runs with MAGICBOX_SANDBOX=off, where it must reach what it looks for: so each
test shows the sandbox is what stops it (and that the probe itself works).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.scheduler import start_run
from orchestration.models import Run, TaskRun
from orchestration.workers import sandbox
from tests.conftest import make_plan, processes_with, py, run_plan, run_tasks, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest.fixture(params=["on", "off"])
def mode(request, settings) -> str:
    """MAGICBOX_SANDBOX for the test: each test using it runs sandboxed and unsandboxed."""
    settings.MAGICBOX_SANDBOX = request.param
    return request.param


def accept_into(server: socket.socket, accepted: list) -> None:
    """Accept one connection on `server` into `accepted`; nothing when the test closed it first."""
    with contextlib.suppress(OSError):
        accepted.append(server.accept())


async def probe(code: str, **task) -> tuple[TaskRun, str]:
    """Run one shell task running Python `code`; (its TaskRun, its output)."""
    run, t = await run_tasks([{"id": "probe", "worker": "shell", "command": py(code), **task}])
    return t["probe"], await sync_to_async(t["probe"].output_text)()


async def test_a_task_cannot_read_the_servers_environment_through_proc(mode):
    # A process of the server with a secret in its environment (as daphne has SECRET_KEY).
    server = subprocess.Popen(["sleep", "120"], env={"PATH": "/usr/bin:/bin", "DATABASE_PASSWORD": "pw-7f3a9c1e"})
    try:
        task_run, out = await probe("""
        import os
        seen = []
        for pid in os.listdir('/proc'):
            if pid.isdigit():
                try:
                    seen.append(open(f'/proc/{pid}/environ', 'rb').read().decode(errors='replace'))
                except OSError:
                    pass
        text = ' '.join(seen)
        print('secret', 'found' if 'pw-7f3a9c1e' in text else 'missing', 'in', len(seen), 'processes')
    """)
    finally:
        server.kill()
        server.wait()
    assert task_run.state == "succeeded", out
    assert ("secret found" in out) == (mode == "off"), out
    assert "pw-7f3a9c1e" not in out


async def test_a_task_can_neither_read_nor_write_the_data_directory(mode, settings):
    data = settings.DATA_DIR
    (data / "admin-password.txt").write_text("hunter2-admin")
    database = data / "magicbox.sqlite3"
    database.write_bytes(b"SQLite format 3\0 the real database")
    task_run, out = await probe(f"""
        for path in ({str(data / 'admin-password.txt')!r}, {str(database)!r}):
            try:
                print('read', path, open(path).read()[:20])
            except OSError as error:
                print('cannot read', path, type(error).__name__)
        try:
            with open({str(database)!r}, 'r+b') as db:
                db.write(b'owned')
            print('wrote the database')
        except OSError as error:
            print('cannot write the database', type(error).__name__)
    """)
    assert task_run.state == "succeeded", out
    assert ("hunter2-admin" in out) == (mode == "off"), out
    assert ("wrote the database" in out) == (mode == "off"), out
    if mode == "on":
        assert database.read_bytes() == b"SQLite format 3\0 the real database"


async def test_a_task_cannot_read_the_checkouts_var_or_another_runs_worktree(mode, settings):
    first, t = await run_tasks([{"id": "secret", "worker": "shell",
                                 "command": ["sh", "-c", "echo run-one-private-9d2 > notes.txt"]}])
    assert t["secret"].state == "succeeded"
    runs = settings.DATA_DIR / "runs"
    var = settings.BASE_DIR / "var"
    task_run, out = await probe(f"""
        import glob, os
        for path in glob.glob({str(runs)!r} + '/*/*/attempt-*/work/notes.txt'):
            print('other run:', open(path).read().strip())
        print('var holds', len(os.listdir({str(var)!r})) if os.path.isdir({str(var)!r}) else 0, 'entries')
    """)
    assert task_run.state == "succeeded", out
    assert ("run-one-private-9d2" in out) == (mode == "off"), out
    if mode == "on":
        assert "var holds 0 entries" in out  # the test database lives there


async def test_a_task_cannot_connect_to_the_redis_socket(mode, settings):
    path = settings.DATA_DIR / "redis.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(5)
    accepted = []
    threading.Thread(target=accept_into, args=(server, accepted), daemon=True).start()
    try:
        task_run, out = await probe(f"""
            import socket
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect({str(path)!r})
                print('connected to redis')
            except OSError as error:
                print('cannot connect', type(error).__name__)
        """)
    finally:
        server.close()
    assert task_run.state == "succeeded", out
    assert ("connected to redis" in out) == (mode == "off"), out


async def test_a_task_without_network_cannot_open_a_socket(mode):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.listen(5)
    code = f"""
        import socket
        try:
            socket.create_connection(('127.0.0.1', {port}), timeout=5).close()
            print('reached the host')
        except OSError as error:
            print('no network', type(error).__name__)
    """
    try:
        offline, offline_out = await probe(code, network=False)
        online, online_out = await probe(code)
    finally:
        listener.close()
    assert "reached the host" in online_out, online_out  # the default: agents need their API
    assert ("reached the host" in offline_out) == (mode == "off"), offline_out
    if mode == "on":
        assert "without network" in offline_out


async def test_a_cancelled_task_takes_its_daemons_with_it_even_with_a_cleared_environment(mode):
    from orchestration.engine.runtime import Engine
    from orchestration.engine.scheduler import cancel_task

    token = f"997.{mode == 'on' and 4242 or 4343}"
    daemonise = f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execve('/bin/sleep', ['sleep', '{token}'], {{}})  # no environment, no group
            os._exit(0)
        os.execvp('sleep', ['sleep', '{token}'])
    """
    plan = await sync_to_async(make_plan)(json.dumps({"name": "daemons", "parallel_execution": {"tasks": [
        {"id": "daemon", "worker": "shell", "command": py(daemonise)}]}}))
    run = await sync_to_async(start_run)(plan)
    engine = Engine()
    await engine.wake()
    await asyncio.to_thread(wait_until, lambda: len(processes_with(token)) >= 2, 30, "the task and its daemon to start")
    task_run = await sync_to_async(TaskRun.objects.get)(run=run, task_id="daemon")
    await sync_to_async(cancel_task)(task_run, "cancelled by ada")
    await asyncio.wait_for(engine.settle(), 60)
    # Inside the sandbox the kernel ends the whole PID namespace with its bwrap; outside it,
    # the marker scan finds the daemon, unless it cleared its environment (then it survives).
    await asyncio.to_thread(wait_until, lambda: not processes_with(token) or mode == "off", 5,
                            "every process of the cancelled task to be gone")
    if mode == "off":
        survivors = processes_with(token)
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
        assert survivors, "without the sandbox, a daemon with a cleared environment outlives the cancel"


async def test_without_user_namespaces_a_task_refuses_to_start_and_says_how_to_fix_it(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_program", lambda: "/bin/false")
    task_run, out = await probe("print('ran')")
    assert task_run.state == "failed"
    assert "the task sandbox cannot be made on this host" in task_run.error
    assert "MAGICBOX_SANDBOX=off" in task_run.error and "user namespaces" in task_run.error
    assert "ran" not in out.split("\n")


async def test_a_run_records_whether_its_tasks_were_sandboxed(mode):
    task_run, out = await probe("print('hello')")
    run = await sync_to_async(Run.objects.get)(pk=task_run.run_id)
    assert run.unsandboxed == (mode == "off")
    assert ("WITHOUT a sandbox" in out) == (mode == "off"), out


async def test_a_task_cannot_signal_the_server(mode):
    task_run, out = await probe(f"""
        import os
        try:
            os.kill({os.getpid()}, 0)  # signal 0: only asks whether the worker process can be signalled
            print('could signal the worker')
        except OSError as error:
            print('cannot signal the worker', type(error).__name__)
    """)
    assert task_run.state == "succeeded", out
    assert ("could signal the worker" in out) == (mode == "off"), out


async def test_a_completion_criterion_reads_the_run_but_cannot_plant_anything_in_it(mode, settings, tmp_path):
    from orchestration.engine.runtime import Engine
    from orchestration.models import StateChange, Verdict

    victim = tmp_path / "victim"
    victim.mkdir()
    plan = {"name": "criteria", "parallel_execution": {
        "tasks": [{"id": "build", "worker": "shell", "command": ["sh", "-c", "echo built > artefact.txt"]}],
        # The integration's worktree would be made at a predictable path in the run directory:
        # a link planted there would make Magic Box write (and later delete) outside it.
        "completion_criteria": [{"name": "plant", "command": ["sh", "-c",
                                 f"cat build/attempt-1/work/artefact.txt && mkdir -p integration && ln -s {victim} integration/1-attempt-1 && echo planted | tr a-z A-Z"]}]}}
    run, t = await run_plan(json.dumps(plan))
    verdict = await Verdict.objects.aget(run=run)
    history = await sync_to_async(list)(StateChange.objects.filter(kind=verdict.KIND, object_id=verdict.pk)
                                        .values_list("from_state", "to_state", "reason"))
    assert t["build"].state == "succeeded" and verdict.state in ("passed", "failed"), (
        t["build"].state, t["build"].error, verdict.state, verdict.summary, verdict.claimed_by, verdict.attempt, history,
        run.state, run.state_reason, f"this process: {os.getpid()}, engines made: {Engine._count}")  # it was checked
    assert "built" in verdict.evidence, verdict.evidence  # it reads the run's files
    assert ("PLANTED" in verdict.evidence) == (mode == "off"), verdict.evidence
    assert (settings.DATA_DIR / "runs" / str(run.pk) / "integration" / "1-attempt-1").is_symlink() == (mode == "off")


async def test_a_task_cannot_reach_unix_sockets_of_the_host(mode):
    # Sockets of local services (/run: databases, D-Bus, Docker; /var/tmp) are no network: a
    # network namespace does not stop them, hiding their directories does.
    path = f"/var/tmp/magicbox-test-{os.getpid()}.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(5)
    threading.Thread(target=accept_into, args=(server, []), daemon=True).start()
    try:
        task_run, out = await probe(f"""
            import socket
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect({path!r})
                print('reached the service')
            except OSError as error:
                print('cannot connect', type(error).__name__)
        """, network=False)
    finally:
        server.close()
        os.unlink(path)
    assert task_run.state == "succeeded", out
    assert ("reached the service" in out) == (mode == "off"), out


async def test_a_checkout_under_tmp_runs_its_own_programs_but_the_rest_of_tmp_stays_hidden(mode, settings):
    # Magic Box cloned under /tmp: its venv, node_modules and scripts must work inside the
    # sandbox (which gives each task an empty /tmp), while other files in /tmp stay unseen.
    checkout = Path(tempfile.mkdtemp(prefix="magicbox-clone-", dir="/tmp"))
    neighbour = Path(tempfile.mkdtemp(prefix="magicbox-neighbour-", dir="/tmp"))
    try:
        tool = checkout / ".venv" / "bin" / "tool"
        tool.parent.mkdir(parents=True)
        tool.write_text("#!/bin/sh\necho tool-ran-3e1\ncat " + str(neighbour / "secret.txt") + " 2>/dev/null || echo secret-hidden\n")
        tool.chmod(0o755)
        (neighbour / "secret.txt").write_text("tmp-secret-77b\n")
        settings.BASE_DIR = checkout
        run, t = await run_tasks([{"id": "tool", "worker": "shell", "command": [str(tool)]}])
        out = await sync_to_async(t["tool"].output_text)()
        assert t["tool"].state == "succeeded", out
        assert "tool-ran-3e1" in out
        assert ("tmp-secret-77b" in out) == (mode == "off"), out
    finally:
        shutil.rmtree(checkout, ignore_errors=True)
        shutil.rmtree(neighbour, ignore_errors=True)
