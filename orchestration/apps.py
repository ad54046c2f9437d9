"""The orchestration app: plans, runs, workers and the engine."""
from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OrchestrationConfig(AppConfig):
    name = "orchestration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from orchestration.roles import ensure_groups

        post_migrate.connect(ensure_groups, sender=self)
