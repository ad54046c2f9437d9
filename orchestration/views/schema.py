"""The plan JSON Schema at a stable URL, for editors that validate plan files as they are typed."""
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from orchestration.plans.loader import editor_schema


@login_not_required
@require_GET
def plan_schema_view(request: HttpRequest) -> JsonResponse:
    """GET /schema/plan.json: the schema plan files are validated against, in either of the seed's
    forms (public: it is not data)."""
    return JsonResponse(editor_schema(), json_dumps_params={"indent": 2})
