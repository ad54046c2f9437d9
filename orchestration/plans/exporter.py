"""Write a stored plan spec back as YAML in the seed's parallel_execution form (re-importable)."""
from __future__ import annotations

from typing import Any

import yaml

from orchestration.plans.repositories import masked

SCHEMA_URL_PATH = "/schema/plan.json"


def spec_to_document(spec: dict[str, Any]) -> dict[str, Any]:
    """The YAML document (as Python data) that load_plan turns back into `spec`."""
    tasks = []
    for task in spec["tasks"]:
        item: dict[str, Any] = {"id": task["id"], "worker": task["worker"]}
        for key in ("description", "prompt", "prompt_file", "output_format", "integration"):
            if task.get(key):
                item[key] = task[key]
        if task.get("depends_on"):
            item["depends_on"] = list(task["depends_on"])
        if task.get("command"):
            item["command"] = list(task["command"])
        if task.get("timeout") is not None:
            item["timeout"] = task["timeout"]
        if task.get("retries"):
            item["retries"] = task["retries"]
        if task.get("network") is False:
            item["network"] = False
        if task.get("output_schema_ref") or task.get("output_schema"):
            item["output_schema"] = task.get("output_schema_ref") or task["output_schema"]
        for key in ("phase", "writes", "resources"):
            if task.get(key):
                item[key] = task[key]
        tasks.append(item)
    execution: dict[str, Any] = {}
    if spec.get("source_id"):
        execution["id"] = spec["source_id"]
    execution["total_tasks"] = len(tasks)
    execution["tasks"] = tasks
    if spec.get("integration_points"):
        execution["integration_points"] = [
            {"between": p["between"], **({"contract": p["contract"]} if p.get("contract") else {})}
            for p in spec["integration_points"]
        ]
    if spec.get("completion_criteria"):
        execution["completion_criteria"] = list(spec["completion_criteria"])
    document: dict[str, Any] = {"name": spec["name"]}
    if spec.get("description"):
        document["description"] = spec["description"]
    if spec.get("workspace"):
        document["workspace"] = workspace_document(spec["workspace"])
    document["parallel_execution"] = execution
    if spec.get("contracts"):
        document["contracts"] = {name: _contract_document(c) for name, c in spec["contracts"].items()}
    return document


def _contract_document(contract: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if contract.get("provider_note"):
        item["provider"] = contract["provider_note"]
    if contract.get("consumer_note"):
        item["consumer"] = contract["consumer_note"]
    if contract.get("phase"):
        item["phase"] = contract["phase"]
    if contract.get("specification"):
        item["specification"] = contract["specification"]
    if contract.get("checks"):
        item["checks"] = [{k: v for k, v in check.items() if v is not None} for check in contract["checks"]]
    return item


def spec_to_yaml(spec: dict[str, Any], schema_url: str = SCHEMA_URL_PATH) -> str:
    """YAML text with a yaml-language-server $schema line, block style, keys in plan order."""
    body = yaml.safe_dump(spec_to_document(spec), sort_keys=False, allow_unicode=True, width=100)
    return f"# yaml-language-server: $schema={schema_url}\n{body}"


def workspace_document(workspace: dict[str, Any]) -> dict[str, Any]:
    """A normalised workspace as YAML would write it: its options left out when at their default,
    credentials in its repository URL masked (an export never carries them)."""
    document = {"repository": masked(workspace["repository"]), "base": workspace.get("base", "HEAD")}
    if workspace.get("keep_worktrees"):
        document["keep_worktrees"] = True
    if workspace.get("check"):
        document["check"] = list(workspace["check"])
    if workspace.get("check_timeout"):
        document["check_timeout"] = workspace["check_timeout"]
    if workspace.get("push"):
        document["push"] = True
    return document
