"""The worker registry: settings.MAGICBOX_WORKERS resolved into adapters, looked up by name."""
from __future__ import annotations

import logging
import os
import sys
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
