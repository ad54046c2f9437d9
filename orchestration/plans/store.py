"""Store validated plans: a Plan per name, a new immutable revision whenever its spec changes."""
from __future__ import annotations

from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestration import audit
from orchestration.models import Plan, PlanRevision
from orchestration.plans import repositories
from orchestration.plans.errors import PlanInvalid, PlanProblem
from orchestration.plans.loader import MAX_PLAN_BYTES, decode_plan, load_plan
from orchestration.plans.spec import PlanSpec


class NameTaken(Exception):
    """Another plan already has this name. The message says which and what to do."""


def save_spec(spec: PlanSpec, source_text: str = "", source_name: str = "", user=None,
              plan: Plan | None = None, new: bool = False, via: str = "") -> tuple[PlanRevision, bool]:
    """Store `spec` (from plans.loader.load_plan) under its name, or as a revision of `plan`.

    With `plan` (the editor), the plan takes the spec's name; with `new`, a new plan is made.
    Either raises NameTaken when another plan has the name. Returns (revision, created): an
    identical spec reuses the plan's latest revision. A new revision is recorded in the audit
    trail as made by `user` (or by the command `via` names).
    """
    with transaction.atomic():
        if new:
            try:
                with transaction.atomic():
                    plan = Plan.objects.create(name=spec.name, description=spec.description, created_by=user)
            except IntegrityError:
                raise NameTaken(f"A plan named '{spec.name}' already exists: choose another name, or edit that plan.") from None
        elif plan is None:
            plan, _ = Plan.objects.select_for_update().get_or_create(
                name=spec.name, defaults={"description": spec.description, "created_by": user}
            )
        else:
            plan = Plan.objects.select_for_update().get(pk=plan.pk)
            if Plan.objects.filter(name=spec.name).exclude(pk=plan.pk).exists():
                raise NameTaken(f"Another plan is already named '{spec.name}': choose another name.")
            plan.name = spec.name
        latest = plan.latest_revision
        if latest is not None and latest.spec == spec:
            return latest, False
        revision = PlanRevision.objects.create(
            plan=plan,
            number=(latest.number + 1) if latest else 1,
            spec=spec,
            source_text=source_text,
            source_name=source_name,
            created_by=user,
        )
        plan.description = spec.description
        plan.updated_at = timezone.now()
        plan.save(update_fields=["name", "description", "updated_at"])
        action = audit.Action.PLAN_CREATED if revision.number == 1 else audit.Action.PLAN_EDITED
        audit.record(action, user, plan=plan, via=via, detail=f"revision {revision.number} from {source_name or 'the editor'}")
    return revision, True


def import_text(text: str, source_name: str, base_dir: Path | None = None, user=None, via: str = "") -> tuple[PlanRevision, bool]:
    """Validate plan YAML and store it as `user`'s (None: a command's, which may name any local
    repository). Raises plans.errors.PlanInvalid; then nothing is stored."""
    spec = load_plan(text, source_name, base_dir, any_repository=repositories.trusted(user))
    return save_spec(spec, text, source_name, user, via=via)


def import_file(path: Path, user=None, via: str = "") -> tuple[PlanRevision, bool]:
    """Read, validate and store a plan file. Raises PlanInvalid (located in the file) or OSError."""
    raw = path.read_bytes()
    if len(raw) > MAX_PLAN_BYTES:
        raise PlanInvalid(str(path), [PlanProblem("", f"the file is larger than {MAX_PLAN_BYTES // 1024} KiB")])
    return import_text(decode_plan(raw, str(path)), str(path), path.resolve().parent, user, via)
