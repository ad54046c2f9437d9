"""What a plan's workspace.repository may name, and how it is shown.

A repository is a URL to clone or a local path on the server. Who saved the plan decides which
local paths it may name: a superuser (or the command line) any; everyone else only paths under
MAGICBOX_REPOSITORY_ROOTS, never the data directory, and the answer does not depend on whether
a path outside them exists. Credentials written into a URL (https://user:token@host/repo.git)
are masked wherever Magic Box shows, stores as text or exports them; only git gets the real URL.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings

from orchestration.plans.spec import Workspace

MASK = "***"
# scheme://userinfo@ — the userinfo runs to the last "@" before the host's "/" (a password may hold "@").
_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]{0,31}://)(?P<userinfo>[^\s/?#'\"<>]{1,1024})@(?=[^\s/?#@])")
_SSH_SCHEMES = ("ssh://", "git+ssh://", "ssh+git://")


class RepositoryRefused(ValueError):
    """A run cannot start because its plan names a repository its people may not use. The
    message says which and how to fix it."""


def is_url(repository: str) -> bool:
    """Whether a workspace repository names a remote to clone (https://, ssh://, file://,
    git@host:path) rather than a local path."""
    return "://" in repository or bool(re.match(r"^[\w.-]+@[\w.-]+:", repository))


def masked(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by ***: "https://ada:tok@host/r.git"
    -> "https://***@host/r.git". A bare ssh user name (ssh://git@host/r.git) is kept."""
    if not text or "@" not in text or "://" not in text:
        return text

    def hide(match: re.Match[str]) -> str:
        scheme, userinfo = match["scheme"], match["userinfo"]
        if scheme.lower() in _SSH_SCHEMES and ":" not in userinfo:
            return match[0]
        return f"{scheme}{MASK}@"

    return _CREDENTIALS.sub(hide, text)


def unmasked(shown: str, real: str) -> str:
    """The repository to store when a form that showed masked(`real`) sends back `shown`:
    `real` if it came back unchanged, else what was typed."""
    return real if real and shown == masked(real) and shown != real else shown


def roots() -> list[Path]:
    """The directories (resolved) under which anyone who may save plans may name a local
    repository (settings.MAGICBOX_REPOSITORY_ROOTS)."""
    return [Path(os.path.realpath(root)) for root in settings.MAGICBOX_REPOSITORY_ROOTS]


def trusted(user) -> bool:
    """Whether `user` may name any local repository path: a superuser, or None (a command run by
    whoever administers the server: importplan, runplan, serve's example plans)."""
    return user is None or bool(getattr(user, "is_superuser", False))


def problem(repository: str, any_path: bool, base_dir: Path | None = None) -> str | None:
    """Why a plan may not name `repository` (a URL, or a path: relative ones are relative to the
    plan file's directory `base_dir`, and need one) as its workspace repository; None when it
    may. any_path: its author may name any local path (see trusted).

    The message never depends on whether a path outside the roots exists or is a repository.
    """
    if repository.strip().startswith("-"):
        return (f"{masked(repository)!r} starts with '-', which git would read as an option: "
                "name the repository by its path or URL (e.g. /srv/repos/app or ./app).")
    if is_url(repository):
        if not repository.lower().startswith("file:"):
            return None
        path = unquote(urlsplit(repository).path)
    elif Path(repository).is_absolute():
        path = repository
    elif base_dir is None:
        return ("an uploaded plan must name its repository by an absolute path on the server (a relative path is only "
                "understood by `manage.py importplan FILE`, relative to the file).")
    else:
        path = str(base_dir / repository)
    if any_path:
        return None
    place = Path(os.path.realpath(path))
    data_dir = Path(os.path.realpath(settings.DATA_DIR))
    allowed = roots()
    if any(place == root or root in place.parents for root in allowed) and not (place == data_dir or data_dir in place.parents):
        return None
    return (f"{masked(repository)} is not under a directory this server lets plans use repositories from "
            f"({', '.join(map(str, allowed)) or 'none is configured'}). Name a repository under one of them or a URL "
            "to clone, or ask an administrator to add its directory to MAGICBOX_REPOSITORY_ROOTS (a superuser may "
            "name any path).")


def check_run(workspace: Workspace | None, *users) -> None:
    """Refuse to start a run of a plan whose repository none of `users` (the one starting it,
    the revision's author) may use: raises RepositoryRefused saying why."""
    if not workspace:
        return
    reason = problem(workspace.repository, any_path=any(trusted(user) for user in users))
    if reason:
        raise RepositoryRefused(f"The run was not started: workspace.repository: {reason}")
