"""Completion criteria and contract checks of a run: which exist, and those decided from the database.

When every task of a run has ended, `prepare` decides the checks that need no process:
"All tasks completed" (every task succeeded), a review task's answer (its first word: APPROVE
passes, REQUEST_CHANGES / REJECT fail), "Integration points verified" (every contract check
passed; unverified when no contract has checks). Other text is shown unverified. The rest (a
command, or a contract's provider and consumer outputs against its schema) wait, pending, for
a worker process to claim them (`claim_next`) and run them (engine.verification).
The run's final state waits for every check.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from orchestration.engine import work, workspace
from orchestration.engine.candidates import candidate_number
from orchestration.models import RUN_TERMINAL, TASK_TERMINAL, CheckState, Run, TaskRun, TaskState, Verdict
from orchestration.plans.spec import Contract, ContractCheck, PlanSpec
from orchestration.plans.validation.schemas import resolve_schema_ref

ALL_TASKS = "all tasks completed"
INTEGRATION = "integration points verified"
EVIDENCE_LIMIT = 20_000
DEFAULT_TIMEOUT = 600


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower().rstrip("."))


def create_verdicts(run: Run) -> None:
    """A pending check (Verdict) for each contract check and completion criterion of the run's
    plan, shown from the start of the run."""
    spec = run.revision.spec
    rows = [Verdict(run=run, kind="contract", position=index, name=check.name)
            for index, (_, _, check) in enumerate(_checks(spec))]
    rows += [Verdict(run=run, kind="criterion", position=index, name=criterion.name)
             for index, criterion in enumerate(spec.completion_criteria)]
    Verdict.objects.bulk_create(rows, ignore_conflicts=True)


def prepare(run: Run, task_runs: list[TaskRun]) -> bool:
    """Decide the checks that need no worker process, once every task has ended (`task_runs`:
    all of the run's). True when every check is decided."""
    spec = run.revision.spec
    if not run.verdicts.exists():
        create_verdicts(run)
    by_id = {t.task_id: t for t in task_runs}
    now = timezone.now()
    contract_rows = list(run.verdicts.filter(kind="contract").order_by("position"))
    for verdict, (contract_name, contract, check) in zip(contract_rows, _checks(spec)):
        if verdict.state != "pending":
            continue
        members = [contract.provider, contract.consumer]
        missing = [t for t in members if t and by_id.get(t) and by_id[t].state != TaskState.SUCCEEDED]
        if missing:
            _decide(verdict, "failed", f"not run: {', '.join(missing)} did not succeed", "", now)
        # else: a command, or the outputs of provider and consumer, checked by a worker process
    contracts_done = all(v.is_decided for v in contract_rows)
    for verdict in run.verdicts.filter(kind="criterion", state="pending").order_by("position"):
        criterion = spec.completion_criteria[verdict.position]
        if criterion.review:
            _decide_review(verdict, by_id.get(criterion.review), now)
        elif not criterion.is_text:
            continue  # a command: run by a worker process
        elif _key(criterion.name) == ALL_TASKS:
            bad = [f"{t.task_id} {t.state}" for t in task_runs if t.state != TaskState.SUCCEEDED]
            _decide(verdict, "failed" if bad else "passed", f"{len(bad)} of {len(task_runs)} tasks did not succeed" if bad
                    else f"all {len(task_runs)} tasks succeeded", "\n".join(bad), now)
        elif _key(criterion.name) == INTEGRATION:
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


def _checks(spec: PlanSpec) -> list[tuple[str, Contract, ContractCheck]]:
    """(contract name, contract, check) of every contract check of `spec`, in plan order."""
    return [(name, contract, check) for name, contract in spec.contracts.items() for check in contract.checks]


def _decide(verdict: Verdict, state: str, summary: str, evidence: str, now) -> None:
    """Decide a pending check from what the database holds (no worker process needed)."""
    verdict.transition(state, expect=CheckState.PENDING, summary=summary[:2000], evidence=evidence[-EVIDENCE_LIMIT:], decided_at=now)


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


@dataclass
class CheckJob:
    """What a worker process does for a claimed check.

    command: the argv to run (None for an outputs check), with `timeout` seconds; a gate's
    check runs in its task's last work directory when that still exists.
    schema: the contract schema the command's JSON stdout, or each output, must match (or None).
    outputs: for an outputs check, [(role, task id, its result or None when there is no such task)].
    """

    command: list[str] | None
    timeout: float
    schema: dict | None
    outputs: list[tuple[str, str, str | None]]
    cwd: Path | None = None  # where the command runs (None: the run's directory)
    candidates: list[tuple[str, Path | None]] = field(default_factory=list)  # a choice's (candidate, its directory)
    score: bool = False  # a choice by the number each candidate's command prints last, not by the first to pass


def claim_next(owner: str, scope: work.Scope = work.Scope()) -> Verdict | None:
    """Claim (engine.work.claim) one pending check within `scope` that needs a worker process,
    of a run whose tasks have all ended; or None."""
    unfinished = TaskRun.objects.filter(run_id=OuterRef("run_id")).exclude(state__in=TASK_TERMINAL)
    # A run's checks run once every task of the run has ended; a gate's check, once its task
    # waits at the gate, and a choice among candidates once they have ended (their Verdicts are
    # only made then: engine.gates, engine.candidates).
    active = (work.claimable(Verdict.objects.filter(state=CheckState.PENDING), scope).exclude(run__state__in=RUN_TERMINAL)
              .filter(Q(kind__in=("gate", "choice")) | ~Exists(unfinished)))
    for verdict in active.select_related("run__revision")[:50]:
        if job_of(verdict) is None:
            continue
        if work.claim(verdict, owner, started_at=timezone.now()):
            return verdict
    return None


def job_of(verdict: Verdict) -> CheckJob | None:
    """What a worker process must do to decide `verdict`, or None when no process is needed."""
    spec = verdict.run.revision.spec
    if verdict.kind == "gate":
        task = spec.tasks[verdict.position]
        attempt = verdict.run.task_runs.values_list("attempt", flat=True).get(task_id=task.id)
        workdir = workspace.attempt_dirs(verdict.run_id, task.id, attempt).workdir
        return CheckJob(task.gate.command, float(task.gate.timeout or DEFAULT_TIMEOUT), None, [],
                        cwd=workdir if workdir.is_dir() else None)
    if verdict.kind == "choice":
        task = spec.tasks[verdict.position]
        choose = task.candidates.choose
        rows = verdict.run.task_runs.filter(candidate_of=task.id, state=TaskState.SUCCEEDED).values_list("task_id", "attempt")
        found = []
        for task_id, attempt in sorted(rows, key=lambda row: candidate_number(row[0])):
            workdir = workspace.attempt_dirs(verdict.run_id, task_id, attempt).workdir
            found.append((task_id, workdir if workdir.is_dir() else None))
        return CheckJob(choose.command, float(choose.timeout or DEFAULT_TIMEOUT), None, [], candidates=found, score=choose.score)
    if verdict.kind == "criterion":
        criterion = spec.completion_criteria[verdict.position]
        if criterion.command:
            return CheckJob(criterion.command, float(criterion.timeout or DEFAULT_TIMEOUT), None, [])
        return None
    name, contract, check = _checks(spec)[verdict.position]
    schema = resolve_schema_ref(f"contracts.{name}.{check.against}", spec.specifications)
    if check.command:
        return CheckJob(check.command, float(check.timeout or DEFAULT_TIMEOUT), schema, [])
    roles = ["provider", "consumer"] if check.outputs == "both" else [check.outputs]
    results = dict(verdict.run.task_runs.values_list("task_id", "result"))
    return CheckJob(None, DEFAULT_TIMEOUT, schema or {}, [(role, getattr(contract, role), results.get(getattr(contract, role)))
                                                           for role in roles])
