"""Shared fixtures: an in-memory channel layer, users, plans from YAML, and an engine driver."""
from __future__ import annotations

import asyncio
import textwrap

import pytest
from asgiref.sync import sync_to_async

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
def quick_retries(settings):
    """Retries wait 50 ms, not seconds (the backoff's own test sets its own)."""
    settings.MAGICBOX_RETRY_BACKOFF = 0.05


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    """Task working directories and logs go to a fresh temporary directory per test."""
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    return settings.DATA_DIR


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


def make_plan(text: str, name: str = "plan.yaml"):
    """Import dedented plan YAML and return the stored Plan (raises PlanInvalid)."""
    from orchestration.plans.store import import_text

    revision, _ = import_text(textwrap.dedent(text), name)
    return revision.plan


async def run_to_end(run_id: int, engine=None):
    """Execute a run with an in-process engine until nothing is left to do; return the Run.

    Awaits the executors themselves (no sleeping): each finishing executor wakes the engine,
    which may start downstream tasks, so this loops until no executor is left.
    """
    from orchestration.engine.runtime import Engine
    from orchestration.models import Run

    engine = engine or Engine()
    await engine.wake()
    await engine.settle()
    return await sync_to_async(Run.objects.get)(pk=run_id)


def py(code: str) -> list[str]:
    """argv running `code` with Magic Box's own Python (found on the workers' PATH as `python`)."""
    return ["python", "-c", textwrap.dedent(code)]


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
