"""New plan from a goal: the orchestrator worker drafts it, a person reviews it in the editor."""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from orchestration.engine import drafts as engine_drafts
from orchestration.engine.signals import wake_engine_on_commit
from orchestration.roles import AUTHOR
from orchestration.models import PlanDraft
from orchestration.workers.registry import availability, worker_config, worker_names


class DraftForm(forms.Form):
    """The goal, and the agent worker that drafts the plan."""

    goal = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), max_length=20_000,
                           help_text="What should be built? The orchestrator splits it into parallel tasks.")
    worker = forms.ChoiceField(choices=[])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        unavailable = availability()
        agents = [w for w in worker_names() if worker_config(w).kind == "agent"]
        self.fields["worker"].choices = [(w, w + (" (not available here)" if unavailable.get(w) else "")) for w in agents]
        self.fields["worker"].initial = settings.MAGICBOX_ORCHESTRATOR_WORKER
        missing = [f"{w}: {unavailable[w]}" for w in agents if unavailable.get(w)]
        if missing:
            self.fields["worker"].help_text = "Not available here — " + " | ".join(missing)


PAST_DRAFTS = 30  # newest drafts listed under the form


@permission_required(AUTHOR, raise_exception=True)
def draft_new(request: HttpRequest) -> HttpResponse:
    """GET/POST /plans/draft/[?from=<draft id>]: ask the orchestrator for a plan (with `from`,
    the goal and worker of that earlier draft filled in, to try again). Lists past drafts."""
    initial = {}
    if request.method == "GET" and (earlier := request.GET.get("from", "")).isdecimal():
        if found := PlanDraft.objects.filter(pk=int(earlier)).values("goal", "worker").first():
            initial = found
    form = DraftForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        draft = PlanDraft.objects.create(goal=form.cleaned_data["goal"], worker=form.cleaned_data["worker"], created_by=request.user)
        wake_engine_on_commit()
        return redirect("draft-detail", draft_id=draft.pk)
    past = PlanDraft.objects.select_related("created_by").defer("output", "spec", "log", "writing").order_by("-pk")[:PAST_DRAFTS]
    return render(request, "plans/draft_new.html", {"form": form, "past": past}, status=400 if form.errors else 200)


@require_POST
@permission_required(AUTHOR, raise_exception=True)
def draft_cancel(request: HttpRequest, draft_id: int) -> HttpResponse:
    """POST /plans/drafts/<id>/cancel/: stop drafting (the drafter's processes are killed)."""
    draft = get_object_or_404(PlanDraft, pk=draft_id)
    engine_drafts.cancel(draft, f"cancelled by {request.user.get_username()}")
    return redirect("draft-detail", draft_id=draft.pk)


def draft_detail(request: HttpRequest, draft_id: int) -> HttpResponse:
    """GET /plans/drafts/<id>/: the draft's progress, then its plan or what was wrong with it."""
    draft = get_object_or_404(PlanDraft, pk=draft_id)
    template = "plans/draft.html#draft-status" if request.htmx else "plans/draft.html"
    return render(request, template, {"draft": draft})
