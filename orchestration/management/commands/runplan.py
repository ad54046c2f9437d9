"""`manage.py runplan FILE|PLAN`: run a plan headless, printing each task's state changes.

It imports the file (or reuses an identical stored revision), starts a run, and executes it
through the same background consumer as `runworker magicbox.engine`, in this process: its
work only (other runs' work is left to worker processes). Other worker processes sharing the
database and channel layer may take part. Exits 0 only if the run succeeded.
"""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import get_default_application
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from orchestration import embedded_redis
from orchestration.engine.runtime import get_engine
from orchestration.engine.scheduler import cancel_run, start_run
from orchestration.management.commands.runworker import EngineWorker
from orchestration.models import Plan, Run, StateChange
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.store import import_file
from orchestration.plans.inputs import InputsRefused
from orchestration.workers.registry import UnknownWorker


def parse_worker_map(items: list[str]) -> dict[str, str]:
    """["gemini=claude"] -> {"gemini": "claude"}. Raises CommandError on a malformed item."""
    mapping = {}
    for item in items:
        source, sep, target = item.partition("=")
        if not sep or not source or not target:
            raise CommandError(f"--map {item!r}: write it as FROM=TO, e.g. --map gemini=claude")
        mapping[source] = target
    return mapping


def parse_inputs(pairs: list[str]) -> dict[str, str]:
    """["branch=main", "ticket=ABC-1"] -> {"branch": "main", "ticket": "ABC-1"}. Raises CommandError
    for an entry without "=" or without a name."""
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--input {pair!r}: write NAME=VALUE, e.g. --input branch=main")
        values[name.strip()] = value
    return values


class Command(BaseCommand):
    help = "Run a plan file (or a stored plan, by name or id) and wait for it; exit 0 only on success."

    def add_arguments(self, parser):
        parser.add_argument("plan", help="a plan file, or the name or id of a stored plan")
        parser.add_argument("--map", action="append", default=[], metavar="FROM=TO",
                            help="run FROM's tasks with worker TO (repeatable)")
        parser.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                            help="a value for the plan's input NAME, used as {{ inputs.NAME }} (repeatable)")

    def handle(self, *args, plan: str, map: list[str], input: list[str], **options):
        call_command("migrate", verbosity=0, interactive=False)
        stored = self._plan(plan)
        try:
            redis = embedded_redis.ensure_running()
        except embedded_redis.EmbeddedRedisError as error:
            raise CommandError(str(error)) from None
        try:
            try:
                run = start_run(stored, None, parse_worker_map(map), via="manage.py runplan", inputs=parse_inputs(input))
            except (UnknownWorker, InputsRefused) as error:
                raise CommandError(str(error)) from None
            self.stdout.write(f"run #{run.pk} of '{stored.name}' r{run.revision.number}: {run.task_runs.count()} tasks "
                              f"(live at /runs/{run.pk}/ on a Magic Box web server sharing this database)")
            signal.signal(signal.SIGTERM, _interrupt)
            try:
                state = asyncio.run(self._watch(run.pk))
            except KeyboardInterrupt:
                # asyncio.run cancelled the engine, which killed the workers' process groups.
                cancel_run(run.pk, "cancelled from runplan (Ctrl-C)", via="manage.py runplan")
                self.stdout.write(f"run #{run.pk} cancelled")
                sys.exit(130)
        finally:
            embedded_redis.stop(redis)
        if state != "succeeded":
            sys.exit(1)

    def _plan(self, ref: str) -> Plan:
        path = Path(ref)
        if path.is_file():
            try:
                revision, created = import_file(path, via="manage.py runplan")
            except PlanInvalid as error:
                raise CommandError(f"the plan was rejected:\n{error.report()}") from None
            self.stdout.write(f"{path}: {'imported' if created else 'reusing'} '{revision.plan.name}' r{revision.number}")
            return revision.plan
        found = Plan.objects.filter(name=ref).first() or (Plan.objects.filter(pk=ref).first() if ref.isdecimal() else None)
        if found is None:
            raise CommandError(f"'{ref}' is neither a plan file nor a stored plan's name or id.")
        return found

    async def _watch(self, run_id: int) -> str:
        get_engine().run_id = run_id  # this process does its own run's work only
        worker = EngineWorker(
            application=get_default_application(),
            channels=[settings.MAGICBOX_ENGINE_CHANNEL],
            channel_layer=get_channel_layer(),
        )
        worker.handle_signals = False  # Ctrl-C and SIGTERM cancel the run instead (see handle)
        serving = asyncio.create_task(worker.handle())
        seen: set[int] = set()
        try:
            while True:
                run, changes = await sync_to_async(_changes)(run_id, seen)
                for change in changes:
                    seen.add(change.pk)
                    if change.task_run_id is None:
                        continue
                    detail = change.task_run.error if change.to_state in ("failed", "timed_out") else ""
                    detail = detail or (change.reason if change.to_state in ("skipped", "queued") else "")
                    self.stdout.write(f"  {change.task_run.task_id}: {change.to_state}" + (f" — {detail}" if detail else ""))
                if run.is_finished:
                    self.stdout.write(f"run #{run_id} {run.state}: {run.state_reason} ({run.duration or 0:.1f} s)")
                    return run.state
                if serving.done():
                    serving.result()  # re-raise the worker's failure
                    raise CommandError("the background consumer stopped unexpectedly")
                await asyncio.sleep(0.2)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)


def _interrupt(signum, frame):
    """SIGTERM acts like Ctrl-C: the run is cancelled and its tasks' processes killed."""
    raise KeyboardInterrupt


def _changes(run_id: int, seen: set[int]) -> tuple[Run, list[StateChange]]:
    """The run, and its state changes not yet printed, in the order they happened."""
    run = Run.objects.get(pk=run_id)
    changes = StateChange.objects.filter(run_id=run_id).exclude(pk__in=seen).select_related("task_run").order_by("at", "id")
    return run, list(changes)
