"""Compose the prompt a worker receives: the task, its contracts, and its upstream results."""
from __future__ import annotations

import json

from orchestration.plans import references
from orchestration.plans.spec import PlanSpec, Task

UPSTREAM_RESULT_LIMIT = 20_000  # characters of each upstream result put into a prompt


def compose_prompt(task: Task, spec: PlanSpec, upstream_results: dict[str, str],
                   prompt_template: str = "", results: dict[str, str] | None = None, findings: str = "",
                   candidates_brief: str = "", inputs: dict[str, str] | None = None) -> str:
    """Return the full prompt of `task` (a task of `spec`).

    upstream_results: {task_id: result text} of the task's direct upstream tasks, in depends_on
    order. results: every finished task's result, for `{{ tasks.<id>.… }}` references (default:
    upstream_results). prompt_template: the text of the task's prompt_file, when it was found.
    findings: a review loop's findings this attempt must address, or (for the review) its own
    findings of the round before, with what to do with them (engine.loops); put last.
    candidates_brief: the candidates a review that chooses among them is shown (engine.choosing.brief).
    inputs: the run's inputs, for `{{ inputs.<name> }}`.
    Raises references.ReferenceError_ when a reference cannot be filled in.
    """
    ids = spec.ids
    results = upstream_results if results is None else results
    parts: list[str] = []
    if prompt_template.strip():
        parts.append(prompt_template.strip())
    if task.description:
        parts.append(f"# Task {task.id}\n{references.fill(task.description, results, ids, inputs).strip()}")
    if task.prompt:
        parts.append(references.fill(task.prompt, results, ids, inputs).strip())
    if task.output_format:
        parts.append(f"## Expected output format\n{task.output_format.strip()}")
    if task.integration:
        parts.append(f"## How this integrates with the other tasks\n{task.integration.strip()}")
    for name, contract in spec.contracts.items():
        body = json.dumps(contract.specification, indent=2, sort_keys=False)
        if task.id in (contract.provider, contract.consumer):
            role = "provide" if task.id == contract.provider else "consume"
            parts.append(
                f"## Contract '{name}' (you {role} it; honour it exactly)\n"
                f"Provider: {contract.provider_note}. Consumer: {contract.consumer_note}.\n```json\n{body}\n```"
            )
        elif contract.phase and contract.phase == task.phase:
            parts.append(
                f"## Contract '{name}' (shared by every task of {contract.phase}, built in parallel; honour it exactly)\n"
                f"```json\n{body}\n```"
            )
    for point in spec.integration_points:
        if task.id in point.between and point.contract:
            parts.append(f"## Integration point between {', '.join(point.between)}\n{point.contract.strip()}")
    if task.output_schema:
        body = json.dumps(task.output_schema, indent=2)
        parts.append("## Output\nAnswer with only a JSON document (no prose, no code fence) that matches this JSON Schema; "
                     f"it is checked.\n```json\n{body}\n```")
    for task_id, result in upstream_results.items():
        text = result if len(result) <= UPSTREAM_RESULT_LIMIT else result[-UPSTREAM_RESULT_LIMIT:] + "\n[…truncated]"
        parts.append(f"## Result of upstream task {task_id}\n{text.strip() or '(empty)'}")
    if candidates_brief:
        parts.append(candidates_brief.strip())
    if findings:
        parts.append(findings.strip())
    return "\n\n".join(parts)
