"""The worker registry: settings.MAGICBOX_WORKERS, with administrators' WorkerSetting overrides
from the database, resolved into adapters, looked up by name.

Overrides are read at most every OVERRIDES_TTL seconds per process, and only from synchronous
code (the engine's claim, the views); code running on an event loop uses the last ones read.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from django.conf import settings
from django.utils.module_loading import import_string

from orchestration.workers.base import WorkerAdapter, WorkerConfig

log = logging.getLogger(__name__)


class UnknownWorker(Exception):
    """A plan or run names a worker that is not configured. The message lists the known ones."""


def worker_names() -> list[str]:
    """The configured worker names, sorted."""
    return sorted(settings.MAGICBOX_WORKERS)


def search_path() -> list[str]:
    """Directories searched for worker programs, and the PATH workers get.

    MAGICBOX_EXTRA_PATH, then the directory of the Python running Magic Box (so `python` in a
    shell task means this one, with its packages), then the server's PATH.
    """
    path = [*settings.MAGICBOX_EXTRA_PATH, str(Path(sys.executable).parent), *os.environ.get("PATH", "").split(os.pathsep)]
    return list(dict.fromkeys(p for p in path if p))


OVERRIDES_TTL = 2.0  # seconds an administrator's change may take to reach a running process
_overrides: dict[str, dict] = {}
_overrides_read_at = float("-inf")


def forget_overrides() -> None:
    """Make the next synchronous lookup read the overrides again (after an admin saves one)."""
    global _overrides_read_at
    _overrides_read_at = float("-inf")


def _current_overrides() -> dict[str, dict]:
    global _overrides, _overrides_read_at
    if time.monotonic() - _overrides_read_at < OVERRIDES_TTL:
        return _overrides
    try:
        asyncio.get_running_loop()
        return _overrides  # no database queries on the event loop: keep the last ones read
    except RuntimeError:
        pass
    from orchestration.models import WorkerSetting

    fields = ("worker", "program", "args", "env", "env_passthrough", "max_parallel")
    _overrides = {row["worker"]: row for row in WorkerSetting.objects.values(*fields)}
    _overrides_read_at = time.monotonic()
    return _overrides


def worker_config(name: str) -> WorkerConfig:
    """Return the resolved configuration of worker `name`: its settings entry with the
    administrators' override (models.WorkerSetting) applied. Raises UnknownWorker."""
    try:
        entry = dict(settings.MAGICBOX_WORKERS[name])
    except KeyError:
        raise UnknownWorker(
            f"Unknown worker '{name}'. Configured workers: {', '.join(worker_names())}."
        ) from None
    override = _current_overrides().get(name)
    if override:
        if override["program"]:
            entry["program"] = override["program"]
        if override["args"] is not None:
            entry["args"] = list(override["args"])
        if override["max_parallel"] is not None:
            entry["max_parallel"] = override["max_parallel"]
        entry["env"] = {**entry.get("env", {}), **(override["env"] or {})}
        entry["env_passthrough"] = [*entry.get("env_passthrough", []), *(override["env_passthrough"] or [])]
    return WorkerConfig(name=name, **entry)


def get_adapter(name: str) -> WorkerAdapter:
    """Return a fresh adapter for worker `name`. Raises UnknownWorker."""
    config = worker_config(name)
    return import_string(config.adapter)(config, search_path())


def availability() -> dict[str, str]:
    """Map each configured worker name to why it cannot run tasks on this host ("" if it can).

    A worker whose adapter cannot be imported (a settings mistake) is logged and reported
    unavailable, so one bad entry does not take the pages down.
    """
    result = {}
    for name in worker_names():
        try:
            result[name] = get_adapter(name).unavailable_reason(dict(os.environ))
        except ImportError:
            log.exception("the adapter of worker %r cannot be imported", name)
            result[name] = f"the adapter of worker {name} cannot be imported (see the server log)"
    return result
