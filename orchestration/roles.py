"""Roles as Django groups: viewers watch and review, authors edit plans, operators run them.

Viewers (orchestration.view_run) watch runs and read plans; a signed-in user in no group is
refused every page and websocket with a message saying whom to ask. Authors
(orchestration.change_plan) also import, write and draft plans and edit prompts; operators
(orchestration.operate_run) also start, cancel and re-run runs. Only administrators manage
users (staff, in /admin/) and workers' commands and environment (superusers: WorkerSetting).
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
    """Create the role groups with their permissions (idempotent; a post_migrate handler).

    Django creates an app's permissions in auth's own post_migrate handler, which may run after
    this one (on the first migrate of a fresh database): they are created here first.
    """
    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    create_permissions(apps.get_app_config("orchestration"), verbosity=0)

    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="orchestration", codename__in=codenames))


VIEWER = "orchestration.view_run"
NO_ROLE_MESSAGE = ("Your account has no role in Magic Box yet. Ask an administrator to add you to the "
                   "Viewers, Authors or Operators group (Admin → Users).")


class RoleRequiredMiddleware:
    """Refuse (403) Magic Box's pages to signed-in users in no role group (without VIEWER).

    The admin, the login and logout pages and views marked login_not_required stay reachable;
    anonymous users are left to LoginRequiredMiddleware (redirect to the login page).
    """

    EXEMPT_PREFIXES = ("/admin/", "/accounts/")

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        from django.template.response import TemplateResponse

        user = request.user
        if (not user.is_authenticated or user.has_perm(VIEWER) or not getattr(view_func, "login_required", True)
                or request.path.startswith(self.EXEMPT_PREFIXES)):
            return None
        return TemplateResponse(request, "403.html", {"message": NO_ROLE_MESSAGE}, status=403).render()
