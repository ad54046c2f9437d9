"""`manage.py serve`: the embedded all-in-one start.

Migrates the database, loads the example plans, starts the embedded Redis (when REDIS_URL is
unset), the daphne web server and background worker processes, prints the URL and a login,
restarts any of them that dies (orchestration.supervisor), and stops them all on Ctrl-C or
SIGTERM.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.checks.security.base import check_secret_key
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from magicbox_web import datadir
from orchestration import embedded_redis
from orchestration.supervisor import Child, Supervisor
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.prompt_library import load_starter_prompts
from orchestration.plans.store import import_file

EXAMPLES_DIR = Path(settings.BASE_DIR) / "examples"


def ensure_admin(username: str = "admin") -> str | None:
    """Create the superuser `username` on first start; return its new password, else None.

    The password is also written to DATA_DIR/admin-password.txt (mode 600) so it can be found
    again; delete the file once you have changed the password.
    """
    users = get_user_model()
    if users.objects.filter(username=username).exists():
        return None
    password = secrets.token_urlsafe(12)
    users.objects.create_superuser(username=username, email="", password=password)
    datadir.write_private(Path(settings.DATA_DIR) / "admin-password.txt", password + "\n")
    return password


# SECRET_KEY values published somewhere (this project's old default): as weak as no key.
PUBLISHED_KEYS = {"magicbox-local-development-key-change-me-in-production"}


def check_exposure(host: str) -> None:
    """Raise CommandError, saying how to fix it, when `host` is not a loopback address and the
    server would be reachable from other machines with DEBUG on or a weak SECRET_KEY (one
    Django's deployment check calls weak, or a published one)."""
    if _is_loopback(host):
        return
    problems = []
    if settings.DEBUG:
        problems.append("DEBUG is on (it shows settings and code to anyone who causes an error): unset DEBUG")
    if settings.SECRET_KEY in PUBLISHED_KEYS or check_secret_key(None):
        problems.append("SECRET_KEY is a default or weak key (anyone knowing it can forge logins): unset SECRET_KEY "
                        f"to use the generated one in {Path(settings.DATA_DIR) / datadir.SECRET_KEY_FILE}, or set "
                        "50 or more random characters")
    if problems:
        raise CommandError(f"refusing to listen on {host}, which other machines can reach: "
                           + "; ".join(problems) + ". (On 127.0.0.1 or localhost, both are allowed.)")


def _is_loopback(host: str) -> bool:
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: whatever it resolves to now, it may resolve elsewhere later
        return False


def _check_port_free(host: str, port: int) -> None:
    """Raise CommandError saying what to do when host:port cannot be listened on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise CommandError(
                f"cannot listen on {host}:{port} ({error.strerror}): is Magic Box already running? "
                f"Stop it, or start this one with --port {port + 1}."
            ) from None


class Command(BaseCommand):
    help = "Start Magic Box: database, example plans, Redis (embedded unless REDIS_URL), web server and workers."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("MAGICBOX_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("MAGICBOX_PORT", "8000")))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("MAGICBOX_WORKER_PROCESSES", "2")),
                            help="background worker processes (each runs many tasks at once); 0 for a web server only, "
                                 "when `runworker` processes run elsewhere")
        parser.add_argument("--no-examples", action="store_true", help="do not load the example plans")

    def handle(self, *args, host: str, port: int, workers: int, no_examples: bool, **options):
        check_exposure(host)
        datadir.private_dir(Path(settings.DATA_DIR))
        left = stop_leftovers()
        if left:
            self.stderr.write(f"[serve] stopped {left} process(es) an earlier serve left running when it ended without them")
        _check_port_free(host, port)
        call_command("migrate", verbosity=0, interactive=False)
        password = ensure_admin()
        added = load_starter_prompts()
        if added:
            self.stdout.write(f"loaded {added} starter prompt(s) into the prompt library")
        if not no_examples:
            self._load_examples()
        try:
            redis = embedded_redis.ensure_running()
        except embedded_redis.EmbeddedRedisError as error:
            raise CommandError(str(error)) from None
        env = dict(os.environ)
        # Links in webhook messages point at this server unless told otherwise (behind a proxy).
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
        env.setdefault("MAGICBOX_PUBLIC_URL", f"http://{shown_host}:{port}")
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        children = []
        if redis is not None:
            children.append(Child("the embedded Redis", embedded_redis.start, proc=redis, stop_last=True))
        web = [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "magicbox_web.asgi:application"]
        children.append(Child("the web server (daphne)", partial(_spawn, web, env)))
        worker = [sys.executable, manage, "runworker", settings.MAGICBOX_ENGINE_CHANNEL]
        children += [Child(f"worker process {n + 1}", partial(_spawn, worker, env)) for n in range(max(0, workers))]
        supervisor = Supervisor(children, report=lambda text: self.stderr.write(f"[serve] {text}"), record=record_children)
        supervisor.start_all()
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
        self.stdout.write(self.style.SUCCESS(f"\nMagic Box is running at {url}"))
        if password:
            self.stdout.write(f"Log in as admin with password {password} (also in {Path(settings.DATA_DIR) / 'admin-password.txt'})")
        else:
            self.stdout.write("Log in as admin (first start's password is in "
                              f"{Path(settings.DATA_DIR) / 'admin-password.txt'}; or run `manage.py changepassword admin`)")
        self.stdout.write("Press Ctrl-C to stop.\n")

        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # SIGHUP: its terminal was closed
            signal.signal(sig, stop)
        try:
            supervisor.watch(lambda: stopping)
        finally:
            supervisor.stop_all()
            children_file().unlink(missing_ok=True)

    def _load_examples(self) -> None:
        for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
            try:
                revision, created = import_file(path, via="manage.py serve (example plans)")
            except PlanInvalid as error:
                self.stderr.write(f"example plan not loaded:\n{error.report()}")
                continue
            if created:
                self.stdout.write(f"loaded example plan '{revision.plan.name}' ({len(revision.spec.tasks)} tasks)")


def children_file() -> Path:
    """Where serve keeps its pid and its children's (DATA_DIR/serve.json)."""
    return Path(settings.DATA_DIR) / "serve.json"


def record_children(pids: list[int]) -> None:
    """Keep this serve's pid and its children's pids in children_file()."""
    datadir.write_private(children_file(), json.dumps({"serve": os.getpid(), "children": pids}))


def stop_leftovers(grace: float = 15.0) -> int:
    """Stop the children an earlier serve of this data directory left running when it died
    (SIGKILL leaves them unsupervised, holding the port): SIGTERM to each group (the workers
    queue their work again), SIGKILL after `grace` seconds. Returns how many there were.
    Only processes still running Magic Box (manage.py, daphne, redis-server) are touched."""
    try:
        recorded = json.loads(children_file().read_text())
    except (OSError, ValueError):
        return 0
    if _alive(recorded.get("serve")):
        return 0  # that serve still runs: it answers for its children
    ours = [pid for pid in recorded.get("children", []) if _alive(pid) and _is_magic_box(pid)]
    for pid in ours:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(pid) for pid in ours) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in ours:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    children_file().unlink(missing_ok=True)
    return len(ours)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_magic_box(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(part in command for part in (b"manage.py", b"daphne", b"redis-server"))


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start one child of serve in a session of its own (its group is what gets signalled)."""
    return subprocess.Popen(argv, cwd=str(settings.BASE_DIR), env=env, stdin=subprocess.DEVNULL, start_new_session=True)
