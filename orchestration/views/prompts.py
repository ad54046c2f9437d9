"""The prompt library in the browser: list, create and edit reusable worker prompts."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from orchestration.roles import AUTHOR
from orchestration.models import PromptTemplate
from orchestration.plans.prompt_library import BadPromptPath, clean_path, references


class PromptForm(forms.ModelForm):
    """A prompt's path (what tasks write as prompt_file) and its text."""

    class Meta:
        model = PromptTemplate
        fields = ["path", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 22, "spellcheck": "true", "style": "width:100%"}),
                   "path": forms.TextInput(attrs={"style": "width:100%", "class": "mono"})}

    def clean_path(self) -> str:
        try:
            path = clean_path(self.cleaned_data["path"])
        except BadPromptPath as error:
            raise forms.ValidationError(str(error)) from None
        if self.instance.pk and path != self.instance.path:
            users = references(self.instance.path)
            if users:
                raise forms.ValidationError(
                    f"{self.instance.path} is used by {', '.join(users)}: renaming it would leave their tasks "
                    f"without it. Make a new prompt instead, or change those plans first.")
        return path


def prompt_list(request: HttpRequest) -> HttpResponse:
    """GET /prompts/: the library, with the plans that use each prompt."""
    prompts = [(p, references(p.path)) for p in PromptTemplate.objects.all()]
    return render(request, "prompts/list.html", {"prompts": prompts})


@permission_required(AUTHOR, raise_exception=True)
def prompt_edit(request: HttpRequest, prompt_id: int | None = None) -> HttpResponse:
    """GET/POST /prompts/new/ and /prompts/<id>/: create or edit one prompt."""
    prompt = get_object_or_404(PromptTemplate, pk=prompt_id) if prompt_id else None
    form = PromptForm(request.POST or None, instance=prompt)
    if request.method == "POST" and form.is_valid():
        saved = form.save(commit=False)
        saved.updated_by, saved.updated_at = request.user, timezone.now()
        saved.save()
        messages.success(request, f"Saved {saved.path}.")
        return redirect("prompt-edit", prompt_id=saved.pk)
    used_by = references(prompt.path) if prompt else []
    return render(request, "prompts/edit.html", {"form": form, "prompt": prompt, "used_by": used_by},
                  status=400 if form.errors else 200)
