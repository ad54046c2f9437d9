"""What a plan's schema cannot say: the checks of a schema-valid plan document, one module per
section (tasks, the DAG, contracts, completion criteria, the workspace, loops / candidates /
gates), sharing one Findings (the document, its graph, and the problems and notices found)."""
from __future__ import annotations

from pathlib import Path

from orchestration.plans.errors import PlanProblem
from orchestration.plans.validation import constructs, contracts, criteria, graph, inputs, tasks, workspace
from orchestration.plans.validation.findings import Findings
from orchestration.plans.yaml_source import LocatedYaml


def semantic_problems(doc: LocatedYaml, workers: list[str], base_dir: Path | None,
                      any_repository: bool) -> tuple[list[PlanProblem], list[PlanProblem]]:
    """(problems, notices) of the schema-valid canonical document `doc.data`, located through doc.

    workers: the configured worker names; base_dir and any_repository: see plans.loader.load_plan.
    """
    found = Findings(doc, workers, base_dir, any_repository)
    if tasks.check(found):
        for section in (graph, criteria, contracts, constructs, workspace, inputs):
            section.check(found)
    return found.problems, found.notices
