"""The worker registry: settings.MAGICBOX_WORKERS resolved into adapters, looked up by name."""
from __future__ import annotations

import os

from django.conf import settings
from django.utils.module_loading import import_string

from orchestration.workers.base import WorkerAdapter, WorkerConfig


class UnknownWorker(Exception):
    """A plan or run names a worker that is not configured. The message lists the known ones."""


def worker_names() -> list[str]:
    """The configured worker names, sorted."""
    return sorted(settings.MAGICBOX_WORKERS)


def search_path() -> list[str]:
    """Directories searched for worker programs: MAGICBOX_EXTRA_PATH, then the server's PATH."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    return [*settings.MAGICBOX_EXTRA_PATH, *path]


def worker_config(name: str) -> WorkerConfig:
    """Return the resolved configuration of worker `name`. Raises UnknownWorker."""
    try:
        entry = settings.MAGICBOX_WORKERS[name]
    except KeyError:
        raise UnknownWorker(
            f"Unknown worker '{name}'. Configured workers: {', '.join(worker_names())}."
        ) from None
    return WorkerConfig(name=name, **entry)


def get_adapter(name: str) -> WorkerAdapter:
    """Return a fresh adapter for worker `name`. Raises UnknownWorker."""
    config = worker_config(name)
    return import_string(config.adapter)(config, search_path())


def availability() -> dict[str, bool]:
    """Map each configured worker name to whether its program is installed on this host."""
    return {name: get_adapter(name).is_available() for name in worker_names()}
