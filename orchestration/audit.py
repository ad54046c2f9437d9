"""The audit trail: record who created, edited, started, cancelled or re-ran what (models.AuditEvent)."""
from __future__ import annotations

from orchestration.models import AuditEvent, Plan, Run
from orchestration.plans.repositories import masked

Action = AuditEvent.Action


def record(action: str, user=None, *, plan: Plan | None = None, run: Run | None = None, detail: str = "",
           via: str = "") -> AuditEvent:
    """Store one audit event. `user` is the acting user (None for a command: then `via` names it,
    e.g. "manage.py runplan"; with a user, `via` says through what: "alice via token 'ci'"). With only `run`, the plan is taken from it. Credentials in URLs in
    `detail` are masked."""
    if plan is None and run is not None:
        plan = run.plan
    if user is not None and user.is_authenticated:
        actor, name = user, user.get_username() + (f" via {via}" if via else "")  # "alice via token 'ci'"
    else:
        actor, name = None, via or "Magic Box"
    return AuditEvent.objects.create(action=action, actor=actor, actor_name=name, plan=plan, run=run, detail=masked(detail))


def latest(events, limit: int = 50) -> dict:
    """Template context for templates/audit/events.html: the newest `limit` of a queryset of events."""
    return {"audit_events": list(events.order_by("-at", "-id")[:limit]), "audit_total": events.count()}
