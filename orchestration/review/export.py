"""A run's results to take elsewhere: summary JSON, a Markdown summary for a pull request or a
ticket, and one zip archive with both, every task's output and every task's diff."""
from __future__ import annotations

import json
import tempfile
import zipfile

from orchestration.models import Run, TaskChange
from orchestration.review import cost
from orchestration.review.output import output_pieces
from orchestration.vcs import collisions

SUMMARY_VERSION = 1


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summary(run: Run) -> dict:
    """The run as JSON-ready data: {"version", "run": {...}, "tasks": [...], "checks": [...],
    "collisions": [...], "integration": {...} | None}. Durations in seconds, costs in dollars; a
    task's cli_version and model are its agent CLI's (None when unknown or a shell command); its
    command, the argv a shell task ran with references and inputs filled in (None otherwise)."""
    task_runs = list(run.task_runs.order_by("position"))
    changes = {c.task_run_id: c for c in TaskChange.objects.filter(task_run__run=run).defer("patch")}
    total = cost.total(task_runs)
    tasks = []
    for t in task_runs:
        task_cost = cost.task_cost(t.worker, t.cost_usd, t.input_tokens, t.output_tokens)
        change = changes.get(t.pk)
        tasks.append({
            "id": t.task_id, "worker": t.worker, "cli_version": t.cli_version or None, "model": t.model or None,
            "state": t.state, "reason": t.state_reason, "attempts": t.attempt,
            "upstream": t.upstream, "started_at": t.started_at.isoformat() if t.started_at else None,
            "finished_at": t.finished_at.isoformat() if t.finished_at else None, "duration_seconds": _seconds(t.duration),
            "command": t.command or None, "exit_code": t.exit_code, "cost_usd": task_cost.usd, "cost_estimated": task_cost.estimated,
            "input_tokens": t.input_tokens, "output_tokens": t.output_tokens, "error": t.error, "result": t.result,
            "change": None if change is None else {
                "branch": change.branch, "start_commit": change.start_commit, "head_commit": change.head_commit,
                "lines_added": change.lines_added, "lines_deleted": change.lines_deleted,
                "files": [{k: f.get(k) for k in ("path", "old_path", "status", "added", "deleted", "binary")} for f in change.files]},
        })
    found = collisions.find(run.revision.spec, {t.task_id: changes[t.pk] for t in task_runs if t.pk in changes}) if len(changes) > 1 else []
    integration = run.integrations.first()
    return {
        "version": SUMMARY_VERSION,
        "run": {"id": run.pk, "plan": run.plan.name, "revision": run.revision.number, "state": run.state,
                "reason": run.state_reason, "started_by": run.started_by.get_username() if run.started_by else None,
                "created_at": run.created_at.isoformat(), "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "duration_seconds": _seconds(run.duration), "cost_usd": total.usd, "cost_estimated": total.estimated,
                "input_tokens": total.input_tokens, "output_tokens": total.output_tokens, "base_commit": run.base_commit or None,
                "rerun_of": run.rerun_of_id, "inputs": run.inputs},
        "tasks": tasks,
        "checks": [{"name": v.name, "kind": v.kind, "state": v.state, "summary": v.summary} for v in run.verdicts.order_by("kind", "position")],
        "collisions": [{"tasks": [c.a, c.b], "files": [f.path for f in c.files], "conflicts": [f.path for f in c.files if f.conflicts]} for c in found],
        "integration": None if integration is None else {
            "state": integration.state, "reason": integration.state_reason, "branch": integration.branch,
            "merged": integration.merged, "head_commit": integration.head_commit or None, "check_exit_code": integration.check_exit_code},
    }


def _cell(value) -> str:
    """Text safe inside a Markdown table cell or heading: one line, pipes and markup escaped."""
    text = str(value if value not in (None, "") else "–").replace("\r", " ").replace("\n", " ")
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("`", "\\`")


def _money(usd: float | None, estimated: bool) -> str:
    return "–" if usd is None else ("≈" if estimated else "") + f"${usd:.4f}"


def markdown(data: dict) -> str:
    """A Markdown summary of summary(run) for a pull request or a ticket."""
    run = data["run"]
    lines = [f"## Magic Box run #{run['id']}: {_cell(run['plan'])} (revision {run['revision']}) — {run['state']}", ""]
    if run["reason"]:
        lines += [f"> {_cell(run['reason'])}", ""]
    facts = [f"duration {run['duration_seconds'] or 0:.1f} s", f"cost {_money(run['cost_usd'], run['cost_estimated'])}",
             f"{run['input_tokens']} tokens in, {run['output_tokens']} out"]
    if run["base_commit"]:
        facts.append(f"base `{run['base_commit'][:10]}`")
    lines += ["; ".join(facts), "", "| Task | Worker | State | Attempts | Duration | Cost | Changes |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for t in data["tasks"]:
        change = t["change"]
        count = len(change["files"]) if change else 0
        changed = (f"{count} file{'s' if count != 1 else ''}, +{change['lines_added']} −{change['lines_deleted']} on `{change['branch']}`"
                   if change else "–")
        duration = f"{t['duration_seconds']:.1f} s" if t["duration_seconds"] is not None else "–"
        agent = " ".join(x for x in (t["worker"], t["cli_version"] and f"v{t['cli_version']}", t["model"] and f"({t['model']})") if x)
        lines.append(f"| `{t['id']}` | {_cell(agent)} | {t['state']} | {t['attempts']} | {duration} | "
                     f"{_money(t['cost_usd'], t['cost_estimated'])} | {_cell(changed)} |")
    failed = [t for t in data["tasks"] if t["state"] not in ("succeeded", "skipped", "pending", "queued", "running")]
    if failed:
        lines += ["", "### Did not succeed", ""] + [f"- `{t['id']}` ({t['state']}): {_cell(t['error'] or t['reason'])}" for t in failed]
    if data["checks"]:
        lines += ["", "### Checks", ""] + [f"- {c['state']}: **{_cell(c['name'])}** — {_cell(c['summary'])}" for c in data["checks"]]
    if data["collisions"]:
        lines += ["", "### Collisions", ""] + [
            f"- `{c['tasks'][0]}` and `{c['tasks'][1]}` changed {', '.join(f'`{p}`' for p in c['files'])}"
            + (f" (do not merge: {', '.join(f'`{p}`' for p in c['conflicts'])})" if c["conflicts"] else "") for c in data["collisions"]]
    if data["integration"]:
        i = data["integration"]
        lines += ["", "### Integration", "", f"{i['state']} on `{i['branch']}`: {_cell(i['reason'])}"]
    return "\n".join(lines) + "\n"


def archive(run: Run):
    """A zip of the run (a temporary file, positioned at its start): summary.json, summary.md,
    outputs/<task>.txt (every attempt's stored output) and diffs/<task>.patch."""
    data = summary(run)
    spooled = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)
    with zipfile.ZipFile(spooled, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("summary.json", json.dumps(data, indent=2, ensure_ascii=False))
        zf.writestr("summary.md", markdown(data))
        for task_run in run.task_runs.order_by("position"):
            with zf.open(f"outputs/{task_run.task_id}.txt", "w") as out:
                for piece in output_pieces(task_run.pk):
                    out.write(piece)
            change = TaskChange.objects.filter(task_run=task_run).only("patch").first()
            if change is not None and change.patch:
                zf.writestr(f"diffs/{task_run.task_id}.patch", change.patch)
    spooled.seek(0)
    return spooled
