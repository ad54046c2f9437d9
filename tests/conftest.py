"""Shared fixtures: an in-memory channel layer, users, plans from YAML, and an engine driver."""
from __future__ import annotations

import asyncio
import contextlib
import textwrap

import pytest
from asgiref.sync import sync_to_async

from tests.processes import children_of, process_alive, processes_with  # noqa: F401 (shared with the tests)

pytest_plugins = ["tests.fakes.clis"]


@pytest.fixture(autouse=True)
def in_memory_channel_layer(settings):
    """Unit tests get a private in-memory channel layer (end-to-end tests start a real Redis)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10_000}}}


@pytest.fixture(autouse=True)
def no_worker_overrides():
    """Tests see no administrators' worker settings unless they store some and call
    registry.forget_overrides() (so tests without a database never query one)."""
    from orchestration.workers import registry

    registry._overrides, registry._overrides_read_at = {}, float("inf")


@pytest.fixture(autouse=True)
def fresh_revision_cache():
    """Each test reads plan revisions anew: a test database may give a new revision the id of
    one an earlier test made and rolled back (engine.revisions caches specs by id)."""
    from orchestration.engine import revisions

    revisions._specs.clear()


@pytest.fixture(autouse=True)
def quick_retries(settings):
    """Retries wait 50 ms, not seconds (the backoff's own test sets its own)."""
    settings.MAGICBOX_RETRY_BACKOFF = 0.05


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    """Task working directories and logs go to a fresh temporary directory per test."""
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    # Tests hand files to and from their tasks through tmp_path; the data directory inside it
    # stays hidden from sandboxed tasks (tests/engine/test_sandbox.py).
    settings.MAGICBOX_SANDBOX_WRITABLE = [str(tmp_path)]
    return settings.DATA_DIR


@pytest.fixture
def unsandboxed(settings, monkeypatch):
    """MAGICBOX_SANDBOX=off for this test and the worker processes it starts: for tests of what
    keeps unsandboxed tasks in check (process groups, the attempt marker), which need the pids
    a task writes to mean the same as on the host (a sandboxed task has a PID namespace)."""
    settings.MAGICBOX_SANDBOX = "off"
    monkeypatch.setenv("MAGICBOX_SANDBOX", "off")


def user_in(django_user_model, username: str, *groups: str):
    """A user in the given role groups (Viewers, Authors, Operators)."""
    from django.contrib.auth.models import Group

    from orchestration.roles import ensure_groups

    ensure_groups()
    member = django_user_model.objects.create_user(username=username, password=f"pw-{username}-123")
    member.groups.add(*Group.objects.filter(name__in=groups))
    return member


@pytest.fixture
def user(django_user_model):
    """An author and operator: may write plans and run them."""
    return user_in(django_user_model, "ada", "Authors", "Operators")


@pytest.fixture
def logged_in_client(client, user):
    """Django's test client, logged in as `user` (an author and operator)."""
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Users made by tests get a cheap hash: the default costs ~0.2 s of CPU a user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def git(repo, *args: str) -> str:
    """Run git in `repo` (identity fixed) and return its stdout."""
    import subprocess

    done = subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args], cwd=repo,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def repo(tmp_path):
    """A git repository on branch main with app.py (20 lines), old.txt, moved.txt and README.md."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("".join(f"line {i}\n" for i in range(1, 21)))
    (path / "old.txt").write_text("to be deleted\n")
    (path / "moved.txt").write_text("".join(f"stable content {i}\n" for i in range(10)))
    (path / "README.md").write_text("# Demo\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    return path


def make_plan(text: str, name: str = "plan.yaml"):
    """Import dedented plan YAML and return the stored Plan (raises PlanInvalid)."""
    from orchestration.plans.store import import_text

    revision, _ = import_text(textwrap.dedent(text), name)
    return revision.plan


@contextlib.contextmanager
def local_http_server(handler):
    """Serve `handler` (an http.server request handler class) on 127.0.0.1 at a free port from a
    thread; yield the server (server.server_port), shut down on leaving."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def store_unchecked(doc: dict, user=None):
    """Store plan `doc` (a dict in the plan file's form) normalised but never validated, as a plan
    saved before a save-time check existed would be; return the Plan (revision by `user`)."""
    from orchestration.plans.loader import _normalise
    from orchestration.plans.store import save_spec

    revision, _ = save_spec(_normalise(doc, "old.yaml", None), "", "old.yaml", user)
    return revision.plan


async def streamed_body(response) -> bytes:
    """The whole body of a streaming response (downloads stream from an async iterator; a sync
    test reads it with asgiref's async_to_sync(streamed_body)(response))."""
    if response.is_async:
        return b"".join([part async for part in response.streaming_content])
    return await sync_to_async(lambda: b"".join(response.streaming_content))()


async def drain_engine(engine=None):
    """Do all background work there is (task runs, checks, drafts, integrations) with an
    in-process engine until nothing is left to do; return the engine.

    Awaits the work itself (no sleeping): each finishing piece of work wakes the engine, which
    may start what waited for it, so this loops until nothing is left.
    """
    from orchestration.engine.runtime import Engine

    engine = engine or Engine()
    await engine.wake()
    await engine.settle()
    return engine


async def run_to_end(run_id: int, engine=None):
    """Execute a run with an in-process engine until nothing is left to do; return the Run."""
    from orchestration.models import Run

    await drain_engine(engine)
    return await sync_to_async(Run.objects.get)(pk=run_id)


async def run_plan(plan_text: str, name: str = "plan.yaml"):
    """Import plan YAML (or JSON), run it to the end in-process; return (Run, {task id: TaskRun})
    with each task run's captured code change (TaskRun.change) loaded."""
    from orchestration.engine.scheduler import start_run
    from orchestration.models import TaskRun

    plan = await sync_to_async(make_plan)(plan_text, name)
    run = await run_to_end((await sync_to_async(start_run)(plan)).pk)
    rows = await sync_to_async(list)(TaskRun.objects.filter(run=run).select_related("change"))
    return run, {t.task_id: t for t in rows}


async def run_tasks(tasks: list[dict], **plan_fields):
    """Run a plan of `tasks` (plus top-level `plan_fields`, e.g. workspace or contracts) to
    the end; see run_plan."""
    import json

    return await run_plan(json.dumps({"name": plan_fields.pop("name", "t"), "parallel_execution": {"tasks": tasks}, **plan_fields}))


def wait_until(condition, timeout: float, what: str):
    """Poll `condition` until it returns something true, and return that; fail the test after
    `timeout` seconds saying what was awaited."""
    import time

    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return value


def py(code: str) -> list[str]:
    """argv running `code` with Magic Box's own Python (found on the workers' PATH as `python`)."""
    return ["python", "-c", textwrap.dedent(code)]


async def wait_for_task(run_id: int, task_id: str, timeout: float):
    """Poll the database until the run's task `task_id` has ended; return its TaskRun. Fail the
    test after `timeout` seconds."""
    from orchestration.models import TaskRun

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (task_run := await TaskRun.objects.aget(run_id=run_id, task_id=task_id)).is_finished:
        if loop.time() > deadline:
            pytest.fail(f"task {task_id} of run {run_id} still {task_run.state} after {timeout} s")
        await asyncio.sleep(0.05)
    return task_run


async def wait_for_run(run_id: int, timeout: float):
    """Poll the database until the run is finished; fail the test after `timeout` seconds."""
    from orchestration.models import Run

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        run = await sync_to_async(Run.objects.get)(pk=run_id)
        if run.is_finished:
            return run
        if loop.time() > deadline:
            pytest.fail(f"run {run_id} still {run.state} after {timeout} s")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database, dropped cleanly on PostgreSQL: connections that async tests opened in
    asgiref's worker threads are never closed by their threads, so end them before the drop."""
    yield
    with django_db_blocker.unblock():
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                               " WHERE datname = current_database() AND pid <> pg_backend_pid()")
