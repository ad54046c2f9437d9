"""Keep secrets off disk: what is left of an attempt's private HOME after it ends, and after its run ends.

When an attempt ends, whatever the outcome, `seal` removes from its HOME every file holding a
secret value (an agent CLI may copy its API key into a config file, a shell snapshot or a log),
the paths its worker declares as scratch or credentials, and moves the session transcripts its
worker declares to `<attempt>/sessions/` (same relative paths: a later resume can put them back).
When the run ends, `discard_run_homes` removes every attempt's HOME and TMPDIR; the transcripts
and the working directories (worktrees kept with `keep_worktrees`) stay.

Attempt directories are created private (mode 0700, see engine.workspace): nothing in them is
readable by other users of the host meanwhile.
"""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orchestration.engine.workspace import run_dir

CHUNK = 1024 * 1024  # bytes read at a time when looking for a secret in a file


def _holds_any(path: Path, needles: list[bytes]) -> bool:
    """Whether the file at `path` contains one of `needles` (read in chunks; unreadable counts as holding one)."""
    overlap = max(len(n) for n in needles) - 1
    try:
        with path.open("rb") as stream:
            tail = b""
            while block := stream.read(CHUNK):
                window = tail + block
                if any(n in window for n in needles):
                    return True
                tail = window[-overlap:] if overlap else b""
    except OSError:
        return True
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def seal(home: Path, secrets: set[str], discard: tuple[str, ...] = (), transcripts: tuple[str, ...] = ()) -> list[str]:
    """Make an ended attempt's HOME hold no secret. Returns the removed files' paths relative to `home`.

    secrets: values that must not stay on disk (engine.secrets.secret_values).
    discard: glob patterns relative to `home` removed whatever they hold (the worker's scratch
    and credential files, WorkerAdapter.HOME_DISCARD).
    transcripts: glob patterns relative to `home` of session transcripts (WorkerAdapter.HOME_TRANSCRIPTS),
    moved to `<home>/../sessions/` once they hold no secret. A missing `home` is left alone.
    """
    if not home.is_dir():
        return []
    removed = []
    for pattern in discard:
        for path in home.glob(pattern):
            removed.append(str(path.relative_to(home)))
            _remove(path)
    needles = [s.encode() for s in secrets if s]
    for path in sorted(home.rglob("*")) if needles else ():
        if path.is_file() and not path.is_symlink() and _holds_any(path, needles):
            removed.append(str(path.relative_to(home)))
            path.unlink(missing_ok=True)
    sessions = home.parent / "sessions"
    for pattern in transcripts:
        for path in home.glob(pattern):
            target = sessions / path.relative_to(home)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
    return removed


def discard_run_homes(run_id: int) -> None:
    """Remove the HOME and TMPDIR of every attempt of run `run_id` (call it once the run has
    ended). Session transcripts moved aside by `seal`, working directories and upstream
    results stay. Idempotent."""
    for scratch in (*run_dir(run_id).glob("*/attempt-*/home"), *run_dir(run_id).glob("*/attempt-*/tmp")):
        shutil.rmtree(scratch, ignore_errors=True)


_discarder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="magicbox-discard")


def discard_run_homes_soon(run_id: int) -> None:
    """discard_run_homes in a background thread of its own: removing a large run's thousands of
    directories never holds up the caller (the engine's database thread, in a commit hook, with
    the next run's tasks waiting behind it). `wait_discarded` waits for what is under way; the
    interpreter waits for it at exit too."""
    _discarder.submit(discard_run_homes, run_id)


def wait_discarded(timeout: float | None = None) -> bool:
    """Block until every discard_run_homes_soon started so far is done (at most `timeout`
    seconds; None: no limit). Returns whether all are done. (The one thread takes them in
    order, so what it does after them marks their end.)"""
    try:
        _discarder.submit(lambda: None).result(timeout)
    except TimeoutError:
        return False
    return True
