"""Roles as Django groups: viewers watch and review, authors edit plans, operators run them.

Every logged-in user may watch runs and read plans. Authors (orchestration.change_plan) import,
write and draft plans and edit prompts; operators (orchestration.operate_run) start, cancel and
re-run runs; only administrators (staff, through /admin/) manage users and workers' settings.
The groups are created (and their permissions kept) after every migrate.
"""
from __future__ import annotations

ROLES = {
    "Viewers": ["view_plan", "view_planrevision", "view_run", "view_taskrun", "view_prompttemplate"],
    "Authors": ["view_plan", "view_planrevision", "view_run", "view_taskrun", "view_prompttemplate",
                "add_plan", "change_plan", "add_prompttemplate", "change_prompttemplate", "add_plandraft"],
    "Operators": ["view_plan", "view_planrevision", "view_run", "view_taskrun", "view_prompttemplate", "operate_run"],
}
AUTHOR = "orchestration.change_plan"
OPERATOR = "orchestration.operate_run"


def ensure_groups(sender=None, **kwargs) -> None:
    """Create the role groups with their permissions (idempotent; a post_migrate handler)."""
    from django.contrib.auth.models import Group, Permission

    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="orchestration", codename__in=codenames))
