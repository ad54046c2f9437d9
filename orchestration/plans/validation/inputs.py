"""Validation of the plan's `inputs:`: what a declaration says that cannot hold (warnings)."""
from __future__ import annotations

from orchestration.plans import references
from orchestration.plans.validation.findings import Findings


def check(f: Findings) -> None:
    """Warn of an input both required and with a default (a run never lacks it, so `required`
    does nothing), and of an input no task uses."""
    declared = f.data.get("inputs") or {}
    used = {name for _, _, text in f.texts() for name in references.INPUT.findall(text)}
    for name, declaration in declared.items():
        if declaration.get("required") and "default" in declaration:
            f.warn(["inputs", name, "required"], f"input {name!r} has a default, so a run never lacks it: `required` does "
                                                 "nothing here. Remove the default to make the value required, or remove `required`.",
                   at_key=True)
        if name not in used:
            f.warn(["inputs", name], f"no task uses input {name!r}: write {{{{ inputs.{name} }}}} in a description, prompt or "
                                     "command, or remove the input.", at_key=True)
