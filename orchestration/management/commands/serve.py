"""`manage.py serve`: the embedded all-in-one start.

Migrates the database, loads the example plans, starts the embedded Redis (when REDIS_URL is
unset), the daphne web server and background worker processes, prints the URL and a login,
restarts any of them that dies (orchestration.supervisor), and stops them all on Ctrl-C or
SIGTERM.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

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
    path = Path(settings.DATA_DIR) / "admin-password.txt"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password


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
        _check_port_free(host, port)
        Path(settings.DATA_DIR).mkdir(parents=True, exist_ok=True)
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
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        children = []
        if redis is not None:
            children.append(Child("the embedded Redis", embedded_redis.start, proc=redis, stop_last=True))
        web = [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "magicbox_web.asgi:application"]
        children.append(Child("the web server (daphne)", partial(_spawn, web, env)))
        worker = [sys.executable, manage, "runworker", settings.MAGICBOX_ENGINE_CHANNEL]
        children += [Child(f"worker process {n + 1}", partial(_spawn, worker, env)) for n in range(max(0, workers))]
        supervisor = Supervisor(children, report=lambda text: self.stderr.write(f"[serve] {text}"))
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

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            supervisor.watch(lambda: stopping)
        finally:
            supervisor.stop_all()

    def _load_examples(self) -> None:
        for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
            try:
                revision, created = import_file(path, via="manage.py serve (example plans)")
            except PlanInvalid as error:
                self.stderr.write(f"example plan not loaded:\n{error.report()}")
                continue
            if created:
                self.stdout.write(f"loaded example plan '{revision.plan.name}' ({len(revision.spec['tasks'])} tasks)")


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start one child of serve in a session of its own (its group is what gets signalled)."""
    return subprocess.Popen(argv, cwd=str(settings.BASE_DIR), env=env, stdin=subprocess.DEVNULL, start_new_session=True)
