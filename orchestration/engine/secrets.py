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

from orchestration.plans.repositories import masked
from orchestration.workers.registry import worker_config

UNFINISHED_SHOWN = 2  # characters of a secret value at the edge of unfinished text that may show (mask_unfinished)
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
MIN_LENGTH = 6  # shorter values would mask ordinary words


def _secrets() -> tuple[list[str], list[tuple[str, str]]]:
    """(names of the variables passed through from the environment that are secrets,
    (name, value) of secret-looking variables the workers' configurations set themselves)."""
    names = set(settings.MAGICBOX_SECRET_VARIABLES)
    configured = []
    for worker in settings.MAGICBOX_WORKERS:
        config = worker_config(worker)
        names.update(n for n in config.env_passthrough if SECRET_NAME.search(n))
        configured += [(n, v) for n, v in config.env.items() if SECRET_NAME.search(n) and len(str(v)) >= MIN_LENGTH]
    return sorted(names), configured


@functools.lru_cache(maxsize=8)
def _pattern(values: tuple[tuple[str, str], ...]) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    if not values:
        return None, {}
    by_value = {value: name for name, value in values}
    ordered = sorted(by_value, key=len, reverse=True)  # the longest first, when one contains another
    return re.compile("|".join(re.escape(v) for v in ordered)), by_value


def _values_from_environment() -> tuple[tuple[str, str], ...]:
    """(name, value) of every secret Magic Box knows: passed through from its environment, or
    set by a worker's configuration."""
    names, configured = _secrets()
    from_environment = [(n, os.environ[n]) for n in names if len(os.environ.get(n, "")) >= MIN_LENGTH]
    return tuple(sorted({*from_environment, *configured}))


def secret_values(env: dict[str, str] | None = None) -> set[str]:
    """The secret values to keep off disk: those mask() masks, plus the values of `env`'s
    variables whose names look like a secret (KEY, TOKEN, ...; at least MIN_LENGTH characters)."""
    values = {value for _, value in _values_from_environment()}
    values |= {v for n, v in (env or {}).items() if SECRET_NAME.search(n) and len(v) >= MIN_LENGTH}
    return values


def mask(text: str) -> str:
    """`text` with every secret value replaced by "[secret NAME]", and the credentials of every
    URL in it by *** (plans.repositories.masked: e.g. git echoing a repository URL)."""
    if not text:
        return text
    text = masked(text)
    pattern, by_value = _pattern(_values_from_environment())
    if pattern is None:
        return text
    return pattern.sub(lambda m: f"[secret {by_value[m.group(0)]}]", text)


def mask_unfinished(text: str, cut: bool) -> str:
    """`text`, the end of a message still being written, masked (mask) and without what may be a
    secret value cut in two: the first characters of one at its end (the rest is not written
    yet) and, when `cut` (the message's beginning was cut off), the last characters of one at
    its start. Up to UNFINISHED_SHOWN characters of a value may show; the whole message, once
    written, is masked as usual."""
    text = mask(text)
    values = [value for _, value in _values_from_environment()]
    held = 0
    for value in values:
        for size in range(min(len(value) - 1, len(text)), UNFINISHED_SHOWN, -1):
            if text.endswith(value[:size]):
                held = max(held, size)
                break
    if held:
        text = text[:-held]
    if cut:
        dropped = 0
        for value in values:
            for size in range(min(len(value) - 1, len(text)), UNFINISHED_SHOWN, -1):
                if text.startswith(value[-size:]):
                    dropped = max(dropped, size)
                    break
        text = text[dropped:]
    return text
