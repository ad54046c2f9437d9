"""Completion criteria and contract checks, evaluated at the end of a run: checked, not trusted.

When every task of a run has ended, `prepare` records a Verdict for each contract check and
completion criterion. Those it can decide from the database are decided at once: "All tasks
completed" (every task succeeded), a review task's answer (its first word: APPROVE passes,
REQUEST_CHANGES / REJECT fail), "Integration points verified" (every contract check passed;
unverified when no contract has checks). Other text is shown unverified.
Commands are run by a worker process (`run_pending`), in the run's directory, with a timeout:
a criterion's command is met when it exits 0; a contract check's JSON stdout must match the
named schema of the contract. The run's final state waits for every verdict.
"""
from __future__ import annotations

import re
from pathlib import Path

from asgiref.sync import sync_to_async
from django.utils import timezone

from orchestration.engine import workspace
from orchestration.engine.executor import base_environment, output_problems
from orchestration.engine.output import storable
from django.db.models import Exists, OuterRef

from orchestration.models import TASK_TERMINAL, Run, TaskRun, TaskState, Verdict
from orchestration.plans.loader import resolve_schema_ref
from orchestration.workers.base import Invocation, WorkerUnavailable
from orchestration.workers.process import run_process
from orchestration.workers.registry import get_adapter

ALL_TASKS = "all tasks completed"
INTEGRATION = "integration points verified"
EVIDENCE_LIMIT = 20_000
DEFAULT_TIMEOUT = 600


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower().rstrip("."))


def create_verdicts(run: Run) -> None:
    """A pending verdict for each contract check and completion criterion (shown from the start)."""
    spec = run.revision.spec
    rows = [Verdict(run=run, kind="contract", position=index, name=check["name"])
            for index, (_, _, check) in enumerate(_checks(spec))]
    for index, criterion in enumerate(spec.get("completion_criteria", [])):
        label = criterion if isinstance(criterion, str) else criterion["name"]
        rows.append(Verdict(run=run, kind="criterion", position=index, name=label))
    Verdict.objects.bulk_create(rows, ignore_conflicts=True)


def prepare(run: Run, task_runs: list[TaskRun]) -> bool:
    """Decide the verdicts that need no command, once every task has ended. True when all decided."""
    spec = run.revision.spec
    if not run.verdicts.exists():
        create_verdicts(run)
    by_id = {t.task_id: t for t in task_runs}
    now = timezone.now()
    contract_rows = list(run.verdicts.filter(kind="contract").order_by("position"))
    for verdict, (contract_name, contract, check) in zip(contract_rows, _checks(spec)):
        if verdict.state != "pending":
            continue
        members = [contract.get("provider"), contract.get("consumer")]
        missing = [t for t in members if t and by_id.get(t) and by_id[t].state != TaskState.SUCCEEDED]
        if missing:
            _decide(verdict, "failed", f"not run: {', '.join(missing)} did not succeed", "", now)
        elif check.get("outputs"):
            _decide_outputs(verdict, contract_name, check, spec, by_id, now)
    contracts_done = all(v.is_decided for v in contract_rows)
    for verdict in run.verdicts.filter(kind="criterion", state="pending").order_by("position"):
        criterion = spec["completion_criteria"][verdict.position]
        if isinstance(criterion, dict) and criterion.get("review"):
            _decide_review(verdict, by_id.get(criterion["review"]), now)
        elif isinstance(criterion, dict):
            continue  # a command: run by a worker process
        elif _key(criterion) == ALL_TASKS:
            bad = [f"{t.task_id} {t.state}" for t in task_runs if t.state != TaskState.SUCCEEDED]
            _decide(verdict, "failed" if bad else "passed", f"{len(bad)} of {len(task_runs)} tasks did not succeed" if bad
                    else f"all {len(task_runs)} tasks succeeded", "\n".join(bad), now)
        elif _key(criterion) == INTEGRATION:
            if not contracts_done:
                continue
            if not contract_rows:
                _decide(verdict, "unverified", "no contract has checks, so nothing verified the integration points",
                        "Add `checks:` to the contracts (a command whose JSON output must match a schema of the contract).", now)
            else:
                failed = [v.name for v in contract_rows if v.state != "passed"]
                _decide(verdict, "failed" if failed else "passed",
                        f"{len(failed)} of {len(contract_rows)} contract checks failed" if failed else f"all {len(contract_rows)} contract checks passed",
                        "\n".join(failed), now)
        else:
            _decide(verdict, "unverified", "free text: nothing checks it", "Give it a command or a review task to have it checked.", now)
    return not run.verdicts.exclude(state__in=("passed", "failed", "unverified")).exists()


def _checks(spec: dict) -> list[tuple[str, dict, dict]]:
    return [(name, contract, check) for name, contract in spec.get("contracts", {}).items() for check in contract.get("checks", [])]


def _decide(verdict: Verdict, state: str, summary: str, evidence: str, now) -> None:
    Verdict.objects.filter(pk=verdict.pk, state__in=("pending", "running")).update(
        state=state, summary=summary[:2000], evidence=evidence[-EVIDENCE_LIMIT:], decided_at=now)
    verdict.state = state


def _decide_outputs(verdict: Verdict, contract_name: str, check: dict, spec: dict, by_id: dict, now) -> None:
    """Validate the structured outputs (JSON results) of the contract's provider and/or consumer."""
    contract = spec["contracts"][contract_name]
    schema = resolve_schema_ref(f"contracts.{contract_name}.{check['against']}", spec["contracts"]) or {}
    roles = ["provider", "consumer"] if check["outputs"] == "both" else [check["outputs"]]
    problems, evidence = [], []
    for role in roles:
        task_run = by_id.get(contract.get(role, ""))
        if task_run is None:
            problems.append(f"the contract has no {role} task")
            continue
        evidence.append(f"{role} {task_run.task_id}:\n{task_run.result[:5000]}")
        problems += [f"{role} {task_run.task_id} {p}" for p in output_problems(task_run.result, schema)]
    summary = "; ".join(problems) if problems else f"{' and '.join(roles)} output matches {check['against']}"
    _decide(verdict, "failed" if problems else "passed", summary, "\n\n".join(evidence), now)


def _decide_review(verdict: Verdict, task_run: TaskRun | None, now) -> None:
    if task_run is None or task_run.state != TaskState.SUCCEEDED:
        state = task_run.state if task_run else "missing"
        _decide(verdict, "failed", f"the review task did not succeed ({state})", task_run.error if task_run else "", now)
        return
    words = task_run.result.strip().split()
    answer = re.sub(r"[^A-Z_]", "", words[0].upper()) if words else ""
    if answer == "APPROVE":
        _decide(verdict, "passed", f"{task_run.task_id}: APPROVE", task_run.result, now)
    elif answer in ("REQUEST_CHANGES", "REJECT"):
        _decide(verdict, "failed", f"{task_run.task_id}: {answer}", task_run.result, now)
    else:
        _decide(verdict, "failed", f"{task_run.task_id} gave no verdict (its answer must start with APPROVE, REQUEST_CHANGES or REJECT)",
                task_run.result, now)


def claim_pending(owner: str) -> int | None:
    """Move one pending command verdict of a run whose tasks have all ended to running; its id."""
    unfinished = TaskRun.objects.filter(run_id=OuterRef("run_id")).exclude(state__in=TASK_TERMINAL)
    active = (Verdict.objects.filter(state="pending").exclude(run__state__in=("succeeded", "failed", "cancelled"))
              .exclude(Exists(unfinished)))  # checks run once every task of the run has ended
    for verdict in active.select_related("run__revision")[:50]:
        if _command_of(verdict) is None:
            continue
        if Verdict.objects.filter(pk=verdict.pk, state="pending").update(state="running", claimed_by=owner):
            return verdict.pk
    return None


def _command_of(verdict: Verdict) -> tuple[list[str], float, dict | None] | None:
    """(argv, timeout seconds, schema the stdout must match or None) of a command verdict."""
    spec = verdict.run.revision.spec
    if verdict.kind == "criterion":
        criterion = spec["completion_criteria"][verdict.position]
        if isinstance(criterion, dict) and criterion.get("command"):
            return criterion["command"], float(criterion.get("timeout") or DEFAULT_TIMEOUT), None
        return None
    name, contract, check = _checks(spec)[verdict.position]
    if not check.get("command"):
        return None  # an outputs check: decided in prepare
    schema = resolve_schema_ref(f"contracts.{name}.{check['against']}", spec.get("contracts", {}))
    return check["command"], float(check.get("timeout") or DEFAULT_TIMEOUT), schema


async def run_pending(verdict_id: int) -> int:
    """Run a claimed command verdict and record it. Returns the run's id."""
    verdict = await sync_to_async(Verdict.objects.select_related("run__revision").get)(pk=verdict_id)
    argv, timeout, schema = await sync_to_async(_command_of)(verdict)
    cwd = workspace.run_dir(verdict.run_id)
    cwd.mkdir(parents=True, exist_ok=True)
    env = base_environment("shell")
    env["MAGICBOX_RUN_DIR"] = str(cwd)
    lines: list[str] = []
    try:
        program = get_adapter("shell").find_program(argv[0])
    except WorkerUnavailable as error:
        await sync_to_async(_record)(verdict_id, "failed", str(error), "")
        return verdict.run_id
    stdout: list[str] = []

    def out(line: str) -> None:
        stdout.append(line)
        lines.append(line)

    try:
        result = await run_process(Invocation(argv=[program, *argv[1:]], env=env, cwd=Path(cwd)), out, lines.append, timeout=timeout)
    except (OSError, ValueError) as error:  # not executable, or a NUL in an argument
        await sync_to_async(_record)(verdict_id, "failed", f"could not start {argv[0]}: {error}", "")
        return verdict.run_id
    evidence = f"$ {' '.join(argv)}\n" + "\n".join(lines)
    if result.timed_out:
        state, summary = "failed", f"timed out after {timeout:g} s"
    elif result.exit_code != 0:
        state, summary = "failed", f"exited with code {result.exit_code}"
    elif schema is not None:
        problems = output_problems("\n".join(stdout), schema)  # stdout only: stderr is evidence
        state = "failed" if problems else "passed"
        summary = ("output does not match the contract: " + "; ".join(problems)) if problems else "output matches the contract"
    else:
        state, summary = "passed", "exited with code 0"
    await sync_to_async(_record)(verdict_id, state, summary, evidence)
    return verdict.run_id


def _record(verdict_id: int, state: str, summary: str, evidence: str) -> None:
    Verdict.objects.filter(pk=verdict_id, state="running").update(
        state=state, summary=storable(summary[:2000]), evidence=storable(evidence[-EVIDENCE_LIMIT:]), decided_at=timezone.now())
