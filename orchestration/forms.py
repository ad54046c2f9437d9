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
    """Start a run, with a value for each of the plan's inputs; optionally map each agent
    worker the plan uses to another agent worker.

    plan_workers: the workers the plan's tasks name. kinds: worker name -> "agent" | "command"
    for every configured worker. unavailable: worker name -> why it cannot run here ("" if it can).
    """

    def __init__(self, *args, plan_workers: list[str], kinds: dict[str, str], unavailable: dict[str, str],
                 inputs: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        for name, declared in (inputs or {}).items():  # the plan's inputs (plans.spec.Input), first
            # Required for the browser only: a value left out is refused by plans.inputs.resolve,
            # with the same message the API and the MCP tools give.
            needed = declared.required and declared.default is None
            self.fields[f"input_{name}"] = forms.CharField(
                label=name, required=False, initial=declared.default,
                help_text=declared.description, max_length=100_000, strip=False,
                widget=forms.TextInput(attrs={"placeholder": declared.default or ("required" if declared.required else ""),
                                              **({"required": True} if needed else {})}))
        for worker in plan_workers:
            kind = kinds.get(worker)
            peers = [w for w in sorted(kinds) if kinds[w] == kind]
            if len(peers) < 2:
                continue  # nothing to map to (a command worker's tasks need their command)
            choices = [(w, f"{w}{' (not available here)' if unavailable.get(w) else ''}") for w in peers]
            self.fields[f"map_{worker}"] = forms.ChoiceField(choices=choices, initial=worker, label=f"Run {worker} tasks with")
        self.unavailable = {w: unavailable[w] for w in plan_workers if unavailable.get(w)}

    def inputs(self) -> dict[str, str]:
        """{input name: the value typed} (inputs left empty take their default at the start)."""
        return {name[6:]: value for name, value in self.cleaned_data.items() if name.startswith("input_") and value != ""}

    def worker_map(self) -> dict[str, str]:
        """{"gemini": "claude", ...} for the workers the user remapped."""
        return {name[4:]: value for name, value in self.cleaned_data.items() if name.startswith("map_") and name[4:] != value}


class RunFilterForm(forms.Form):
    """The runs list's filters, read from the page's GET parameters (all optional):
    state (a RunState value), plan (a plan id), started_by (a username), since and until (dates,
    YYYY-MM-DD, both days included, in the server's time zone) and q (text in the plan's name).
    An invalid field is reported on the form and left out of the filter."""

    state = forms.ChoiceField(required=False, label="State")
    plan = forms.ModelChoiceField(queryset=None, required=False, empty_label="any plan", label="Plan")
    started_by = forms.ModelChoiceField(queryset=None, required=False, empty_label="anyone", label="Started by",
                                        to_field_name="username")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    q = forms.CharField(required=False, max_length=200, label="Plan name",
                        widget=forms.TextInput(attrs={"type": "search", "placeholder": "search plan names"}))

    def __init__(self, *args, **kwargs):
        from django.contrib.auth import get_user_model

        from orchestration.models import Plan, RunState

        super().__init__(*args, **kwargs)
        self.fields["state"].choices = [("", "any state"), *RunState.choices]
        self.fields["plan"].queryset = Plan.objects.order_by("name")
        self.fields["started_by"].queryset = get_user_model().objects.order_by("username")

    def clean(self) -> dict:
        data = super().clean()
        if data.get("since") and data.get("until") and data["until"] < data["since"]:
            self.add_error("until", "must be on or after the From date: swap them or clear one")
        return data

    def filters(self) -> dict:
        """The valid filters: {field name: cleaned value} for the fields given and valid."""
        self.is_valid()
        return {name: value for name, value in getattr(self, "cleaned_data", {}).items() if value not in (None, "")}
