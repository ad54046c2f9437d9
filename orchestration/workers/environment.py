"""The explicit environment every worker process starts from: an allowlist, never os.environ."""
from __future__ import annotations

import os

from orchestration.workers.base import WorkerAdapter
from orchestration.workers.registry import UnknownWorker, get_adapter, search_path, worker_config

BASE_ENV_NAMES = ("LANG", "LC_ALL", "TZ", "TERM")
NESTED_SESSION_NAMES = ("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT")  # claude refuses to start inside another session


def base_environment(worker: str) -> dict[str, str]:
    """{name: value} for a process of `worker` (a task's worker, or "shell" for check commands).

    PATH: the registry's search path (the same directories worker programs are found in).
    Plus LANG/LC_ALL/TZ/TERM and the worker's env_passthrough variables when the server has them.
    """
    env = {"PATH": os.pathsep.join(search_path()), "LANG": "C.UTF-8"}
    env.update({k: os.environ[k] for k in BASE_ENV_NAMES if k in os.environ})
    try:
        passthrough = worker_config(worker).env_passthrough
    except UnknownWorker:
        passthrough = []
    env.update({k: os.environ[k] for k in passthrough if k in os.environ})
    for nested in NESTED_SESSION_NAMES:
        env.pop(nested, None)
    return env


def worker_setup(worker: str) -> tuple[WorkerAdapter, dict[str, str]]:
    """The adapter of `worker` and its base environment, with the administrators' current
    overrides (models.WorkerSetting). Call it from synchronous code (the engine's database
    thread): only there are the overrides read afresh. Raises UnknownWorker."""
    return get_adapter(worker), base_environment(worker)
