"""The data directory kept private: the directory 0700, the files the server keeps in it 0600,
and the installation's generated SECRET_KEY.

Used by settings (at import, in every process) and by `manage.py serve`. Only what this user
owns is tightened: a directory an administrator made for another user is left as it is.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

DIR_MODE = 0o700
FILE_MODE = 0o600
SECRET_KEY_FILE = "secret-key"


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as mode 0700, or tighten it to 0700 if this user owns it.

    Returns `path`. Raises OSError when it cannot be created.
    """
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, DIR_MODE)
    return path


def private_file(path: Path, create: bool = True) -> Path:
    """Make `path` a file of mode 0600: created empty when missing (with `create`), else tightened
    when this user owns it. Returns `path`. Raises OSError when it cannot be created."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    _tighten(path, FILE_MODE)
    return path


def write_private(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` as a file of mode 0600, replacing it atomically: it is
    never readable by others, not even for a moment. Raises OSError."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def installation_secret(data_dir: Path) -> str:
    """The installation's SECRET_KEY: read from `data_dir`/secret-key, generated there (50+
    random URL-safe characters, mode 0600) on first use. Processes starting together agree on
    one key: the file appears whole, and the first to create it wins.

    Raises OSError when the file can neither be read nor created, ImproperlyConfigured when
    someone left it empty.
    """
    path = data_dir / SECRET_KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        _tighten(path, FILE_MODE)
        if key := path.read_text(encoding="utf-8").strip():
            return key
    fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=f".{SECRET_KEY_FILE}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secrets.token_urlsafe(50) + "\n")
        try:
            os.link(temporary, path)  # fails if another process made it first: then theirs counts
        except FileExistsError:
            pass
    finally:
        Path(temporary).unlink(missing_ok=True)
    if key := path.read_text(encoding="utf-8").strip():
        return key
    raise ImproperlyConfigured(f"{path} is empty: delete it (a new key is made on the next start) or set SECRET_KEY.")


def _tighten(path: Path, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        status = path.stat()
        if status.st_uid == os.getuid() and status.st_mode & 0o777 != mode:
            path.chmod(mode)
