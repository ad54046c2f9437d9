"""Mask the values of secret variables (API keys, tokens) wherever Magic Box stores text.

Secret variables: settings.MAGICBOX_SECRET_VARIABLES, plus every worker's passthrough variable
whose name looks like a secret (KEY, TOKEN, SECRET, PASSWORD). Their values, as this process
sees them in its environment, and the values of such variables that a worker's configuration
sets itself (settings or an administrator's WorkerSetting), are replaced by `[secret NAME]` in task output, results, errors,
prompts and check evidence before anything is written to the database.
"""
from __future__ import annotations

import functools
import os
import re

from django.conf import settings

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
MIN_LENGTH = 6  # shorter values would mask ordinary words


def secret_names() -> list[str]:
    """The names of the variables treated as secrets."""
    from orchestration.workers.registry import worker_config

    names = set(settings.MAGICBOX_SECRET_VARIABLES)
    for worker in settings.MAGICBOX_WORKERS:
        names.update(n for n in worker_config(worker).env_passthrough if SECRET_NAME.search(n))
    return sorted(names)


def _configured_secrets() -> list[tuple[str, str]]:
    """(name, value) of secret-looking variables that workers' configurations set themselves."""
    from orchestration.workers.registry import worker_config

    return [(name, value) for worker in settings.MAGICBOX_WORKERS
            for name, value in worker_config(worker).env.items() if SECRET_NAME.search(name) and len(str(value)) >= MIN_LENGTH]


@functools.lru_cache(maxsize=8)
def _pattern(values: tuple[tuple[str, str], ...]) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    if not values:
        return None, {}
    by_value = {value: name for name, value in values}
    ordered = sorted(by_value, key=len, reverse=True)  # the longest first, when one contains another
    return re.compile("|".join(re.escape(v) for v in ordered)), by_value


def mask(text: str) -> str:
    """`text` with every secret value replaced by "[secret NAME]"."""
    if not text:
        return text
    from_environment = [(n, os.environ[n]) for n in secret_names() if len(os.environ.get(n, "")) >= MIN_LENGTH]
    values = tuple(sorted({*from_environment, *_configured_secrets()}))
    pattern, by_value = _pattern(values)
    if pattern is None:
        return text
    return pattern.sub(lambda m: f"[secret {by_value[m.group(0)]}]", text)
