"""`manage.py exportplan PLAN`: print a plan's latest (or a given) revision as re-importable YAML."""
from django.core.management.base import BaseCommand, CommandError

from orchestration.models import Plan
from orchestration.plans.exporter import spec_to_yaml


class Command(BaseCommand):
    help = "Print a plan (by name or id) as YAML that imports back to the same plan."

    def add_arguments(self, parser):
        parser.add_argument("plan", help="plan name or id")
        parser.add_argument("--revision", type=int, help="revision number (default: the latest)")
        parser.add_argument("--schema-url", default="/schema/plan.json", help="URL put in the $schema comment")

    def handle(self, *args, plan: str, revision: int | None, schema_url: str, **options):
        found = Plan.objects.filter(name=plan).first() or (Plan.objects.filter(pk=plan).first() if plan.isdecimal() else None)
        if found is None:
            raise CommandError(f"No plan named or numbered '{plan}'. See /plans/ or `manage.py importplan`.")
        rev = found.revisions.filter(number=revision).first() if revision else found.latest_revision
        if rev is None:
            raise CommandError(f"Plan '{found.name}' has no revision {revision}.")
        self.stdout.write(spec_to_yaml(rev.spec, schema_url), ending="")
