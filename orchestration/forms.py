"""Forms: plan import and run start."""
from __future__ import annotations

from django import forms

from orchestration.plans import repositories
from orchestration.plans.errors import PlanInvalid
from orchestration.plans.loader import MAX_PLAN_BYTES, decode_plan, load_plan


class PlanImportForm(forms.Form):
    """Upload a plan file or paste its YAML. A valid form carries the loaded spec in `spec`.

    user: who imports it (decides which local repository paths the plan may name; without one,
    only those under MAGICBOX_REPOSITORY_ROOTS).
    """

    file = forms.FileField(required=False, help_text="A plan in the seed's parallel_execution: form (.yaml).")
    text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}),
                           label="…or paste YAML")

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self) -> dict:
        data = super().clean()
        upload = data.get("file")
        try:
            if upload:
                if upload.size > MAX_PLAN_BYTES:
                    raise forms.ValidationError(f"{upload.name}: the file is larger than {MAX_PLAN_BYTES // 1024} KiB.")
                source = upload.name
                text = decode_plan(upload.read(), source)
            elif data.get("text", "").strip():
                text, source = data["text"], "pasted plan"
                if len(text.encode("utf-8", "replace")) > MAX_PLAN_BYTES:
                    raise forms.ValidationError(f"The pasted plan is larger than {MAX_PLAN_BYTES // 1024} KiB.")
            else:
                raise forms.ValidationError("Choose a plan file or paste its YAML.")
            self.spec = load_plan(text, source, any_repository=self.user is not None and repositories.trusted(self.user))
        except PlanInvalid as error:
            self.problems = error.problems
            raise forms.ValidationError([p.format(source) for p in error.problems]) from None
        self.source_text, self.source_name = text, source
        return data


class RunStartForm(forms.Form):
    """Start a run; optionally map each agent worker the plan uses to another agent worker.

    plan_workers: the workers the plan's tasks name. kinds: worker name -> "agent" | "command"
    for every configured worker. unavailable: worker name -> why it cannot run here ("" if it can).
    """

    def __init__(self, *args, plan_workers: list[str], kinds: dict[str, str], unavailable: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        for worker in plan_workers:
            kind = kinds.get(worker)
            peers = [w for w in sorted(kinds) if kinds[w] == kind]
            if len(peers) < 2:
                continue  # nothing to map to (a command worker's tasks need their command)
            choices = [(w, f"{w}{' (not available here)' if unavailable.get(w) else ''}") for w in peers]
            self.fields[f"map_{worker}"] = forms.ChoiceField(choices=choices, initial=worker, label=f"Run {worker} tasks with")
        self.unavailable = {w: unavailable[w] for w in plan_workers if unavailable.get(w)}

    def worker_map(self) -> dict[str, str]:
        """{"gemini": "claude", ...} for the workers the user remapped."""
        return {name[4:]: value for name, value in self.cleaned_data.items() if name.startswith("map_") and name[4:] != value}
