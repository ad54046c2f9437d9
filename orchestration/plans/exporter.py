"""Write a stored plan spec back as YAML in the seed's parallel_execution form (re-importable)."""
from __future__ import annotations

from typing import Any

import yaml

from orchestration.plans.repositories import masked
from orchestration.plans.spec import Contract, PlanSpec, Task, Workspace

SCHEMA_URL_PATH = "/schema/plan.json"


def spec_to_document(spec: PlanSpec) -> dict[str, Any]:
    """The YAML document (as Python data) that load_plan turns back into `spec`."""
    tasks = []
    for task in spec.tasks:
        item: dict[str, Any] = {"id": task.id, "worker": task.worker}
        for key in ("description", "prompt", "prompt_file", "output_format", "integration"):
            if getattr(task, key):
                item[key] = getattr(task, key)
        if task.depends_on:
            item["depends_on"] = list(task.depends_on)
        if task.command:
            item["command"] = list(task.command)
        if task.timeout is not None:
            item["timeout"] = task.timeout
        if task.retries:
            item["retries"] = task.retries
        if task.network is False:
            item["network"] = False
        if task.output_schema_ref or task.output_schema:
            item["output_schema"] = task.output_schema_ref or task.output_schema
        for key in ("phase", "writes", "resources"):
            if getattr(task, key):
                item[key] = getattr(task, key)
        item.update(constructs_document(task))
        tasks.append(item)
    execution: dict[str, Any] = {}
    if spec.source_id:
        execution["id"] = spec.source_id
    execution["total_tasks"] = len(tasks)
    execution["tasks"] = tasks
    if spec.integration_points:
        execution["integration_points"] = [
            {"between": list(p.between), **({"contract": p.contract} if p.contract else {})} for p in spec.integration_points
        ]
    if spec.completion_criteria:
        execution["completion_criteria"] = [c.to_dict() for c in spec.completion_criteria]
    document: dict[str, Any] = {"name": spec.name}
    if spec.description:
        document["description"] = spec.description
    if spec.workspace:
        document["workspace"] = workspace_document(spec.workspace)
    if spec.inputs:
        document["inputs"] = inputs_document(spec)
    document["parallel_execution"] = execution
    if spec.contracts:
        document["contracts"] = {name: contract_document(c) for name, c in spec.contracts.items()}
    return document


def inputs_document(spec: PlanSpec) -> dict[str, Any]:
    """The plan's `inputs:` as a plan file writes them (keys left out at their default)."""
    return {name: {**({"default": i.default} if i.default is not None else {}), **({"description": i.description} if i.description else {}),
                   **({"required": True} if i.required else {})} for name, i in spec.inputs.items()}


def constructs_document(task: Task) -> dict[str, Any]:
    """The task's loop, candidates, choose and gate keys as a plan file writes them ({} when none)."""
    item: dict[str, Any] = {}
    if task.loop:
        item["loop"] = {"fixes": list(task.loop.fixes), "max_rounds": task.loop.max_rounds}
    if task.candidates:
        workers = task.candidates.workers
        item["candidates"] = {"worker": workers[0], "n": len(workers)} if len(set(workers)) == 1 else list(workers)
        choose = task.candidates.choose
        if choose.way == "person":
            item["choose"] = "person"
        elif choose.way == "review":
            item["choose"] = {"review": choose.review}
        else:
            item["choose"] = {"command": list(choose.command), **({"score": True} if choose.score else {}),
                              **({"timeout": choose.timeout} if choose.timeout is not None else {})}
    if task.gate:
        gate = task.gate
        item["gate"] = {**({"approve": True} if gate.approve else {"command": list(gate.command or [])}),
                        **({"message": gate.message} if gate.message else {}),
                        **({"timeout": gate.timeout} if gate.timeout is not None else {})}
    return item


def contract_document(contract: Contract) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if contract.provider_note:
        item["provider"] = contract.provider_note
    if contract.consumer_note:
        item["consumer"] = contract.consumer_note
    if contract.phase:
        item["phase"] = contract.phase
    if contract.specification:
        item["specification"] = contract.specification
    if contract.checks:
        item["checks"] = [{k: v for k, v in (("name", c.name), ("command", c.command), ("outputs", c.outputs),
                                              ("against", c.against), ("timeout", c.timeout)) if v is not None}
                          for c in contract.checks]
    return item


def spec_to_yaml(spec: PlanSpec, schema_url: str = SCHEMA_URL_PATH) -> str:
    """YAML text with a yaml-language-server $schema line, block style, keys in plan order."""
    body = yaml.safe_dump(spec_to_document(spec), sort_keys=False, allow_unicode=True, width=100)
    return f"# yaml-language-server: $schema={schema_url}\n{body}"


def workspace_document(workspace: Workspace) -> dict[str, Any]:
    """A workspace as YAML would write it: its options left out when at their default,
    credentials in its repository URL masked (an export never carries them)."""
    document: dict[str, Any] = {"repository": masked(workspace.repository), "base": workspace.base}
    if workspace.keep_worktrees:
        document["keep_worktrees"] = True
    if workspace.check:
        document["check"] = list(workspace.check)
    if workspace.check_timeout:
        document["check_timeout"] = workspace.check_timeout
    if workspace.push:
        document["push"] = True
    return document
