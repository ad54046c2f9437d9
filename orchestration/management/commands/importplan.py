"""`manage.py importplan FILE…`: validate plan files and store them as plan revisions."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from orchestration.plans.errors import PlanInvalid
from orchestration.plans.store import import_file


class Command(BaseCommand):
    help = "Import plan files (YAML, the seed's parallel_execution: form). A rejected file stores nothing."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)

    def handle(self, *args, files: list[Path], **options):
        failed = 0
        for path in files:
            try:
                revision, created = import_file(path, via="manage.py importplan")
            except PlanInvalid as error:
                failed += 1
                self.stderr.write(error.report())
                continue
            except OSError as error:
                failed += 1
                self.stderr.write(f"{path}: cannot read the file: {error.strerror}")
                continue
            verb = "imported" if created else "unchanged"
            self.stdout.write(f"{path}: {verb} plan '{revision.plan.name}' revision {revision.number} "
                              f"({len(revision.spec.tasks)} tasks)")
        if failed:
            raise CommandError(f"{failed} of {len(files)} plan file(s) rejected; nothing was stored for them.")
