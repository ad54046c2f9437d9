"""The scheduler starts each task as soon as its upstream tasks succeeded, in parallel."""
from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from orchestration.engine.scheduler import start_run
from orchestration.models import TaskRun
from tests.conftest import make_plan, run_to_end, wait_for_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def sleeper(task_id: str, seconds: float, depends_on=(), fail: bool = False) -> dict:
    code = f"import time, sys; time.sleep({seconds}); print('{task_id} done'); sys.exit({3 if fail else 0})"
    return {"id": task_id, "worker": "shell", "command": ["python", "-c", code], "depends_on": list(depends_on)}


def plan_yaml(tasks: list[dict]) -> str:
    return json.dumps({"name": "t", "parallel_execution": {"tasks": tasks}})  # JSON is YAML


async def task_runs(run_id: int) -> dict[str, TaskRun]:
    rows = await sync_to_async(list)(TaskRun.objects.filter(run_id=run_id))
    return {t.task_id: t for t in rows}


def waits_for(task_id: str, marks, other: str, depends_on=()) -> dict:
    """A task that marks its start, then waits (up to 120 s) until `other` has marked its own
    start: it ends at once when the two run at the same time, and fails when they do not."""
    code = (f"import pathlib, sys, time\n"
            f"marks = pathlib.Path({str(marks)!r}); (marks / {task_id!r}).touch()\n"
            f"deadline = time.monotonic() + 120\n"
            f"while not (marks / {other!r}).exists():\n"
            f"    if time.monotonic() > deadline: sys.exit('{other} never ran at the same time as {task_id}')\n"
            f"    time.sleep(0.02)\n")
    return {"id": task_id, "worker": "shell", "command": ["python", "-c", code], "depends_on": list(depends_on)}


async def test_a_diamond_runs_its_middle_tasks_at_the_same_time(tmp_path):
    # a -> (b, c) -> d: b and c each wait for the other to have started; d starts after both.
    plan = await sync_to_async(make_plan)(
        plan_yaml([sleeper("a", 0.1), waits_for("b", tmp_path, "c", ["a"]), waits_for("c", tmp_path, "b", ["a"]),
                   sleeper("d", 0.1, ["b", "c"])])
    )
    run = await sync_to_async(start_run)(plan)
    run = await run_to_end(run.pk)
    t = await task_runs(run.pk)
    assert run.state == "succeeded", {k: v.error for k, v in t.items()}
    assert t["b"].started_at >= t["a"].finished_at and t["c"].started_at >= t["a"].finished_at
    assert t["d"].started_at >= max(t["b"].finished_at, t["c"].finished_at)


async def test_a_task_starts_when_its_own_upstream_finished_not_when_the_phase_did(tmp_path):
    # slow and fast are independent; after_fast depends only on fast. slow waits until
    # after_fast has started, so the run only succeeds if after_fast did not wait for slow.
    plan = await sync_to_async(make_plan)(
        plan_yaml([waits_for("slow", tmp_path, "after_fast"), sleeper("fast", 0.1), waits_for("after_fast", tmp_path, "after_fast", ["fast"])])
    )
    run = await sync_to_async(start_run)(plan)
    run = await run_to_end(run.pk)
    t = await task_runs(run.pk)
    assert run.state == "succeeded", {k: v.error for k, v in t.items()}
    assert t["after_fast"].started_at < t["slow"].finished_at


async def test_a_failed_task_skips_exactly_its_downstream_tasks():
    #   a ─▶ bad ─▶ x ─▶ y        a ─▶ good ─▶ z        (and x also after good)
    plan = await sync_to_async(make_plan)(
        plan_yaml([
            sleeper("a", 0.1),
            sleeper("bad", 0.1, ["a"], fail=True),
            sleeper("good", 0.3, ["a"]),
            sleeper("x", 0.1, ["bad", "good"]),
            sleeper("y", 0.1, ["x"]),
            sleeper("z", 0.1, ["good"]),
        ])
    )
    run = await sync_to_async(start_run)(plan)
    run = await run_to_end(run.pk)
    t = await task_runs(run.pk)
    assert {k: v.state for k, v in t.items()} == {
        "a": "succeeded", "bad": "failed", "good": "succeeded", "x": "skipped", "y": "skipped", "z": "succeeded",
    }
    assert t["x"].state_reason == "upstream task 'bad' did not succeed"
    assert t["y"].state_reason == "upstream task 'bad' did not succeed"
    assert t["bad"].exit_code == 3 and "exited with code 3" in t["bad"].error
    assert run.state == "failed" and "bad failed" in run.state_reason and "2 skipped" in run.state_reason


async def test_the_concurrency_limit_holds(settings):
    settings.MAGICBOX_MAX_PARALLEL = 2
    plan = await sync_to_async(make_plan)(plan_yaml([sleeper(f"t{i}", 0.4) for i in range(5)]))
    run = await sync_to_async(start_run)(plan)
    run = await run_to_end(run.pk)
    t = list((await task_runs(run.pk)).values())
    for moment in [x.started_at for x in t]:
        running = [x for x in t if x.started_at <= moment < x.finished_at]
        assert len(running) <= 2
    assert run.state == "succeeded"


async def test_a_run_whose_wake_up_message_was_lost_is_picked_up_by_the_sweep(settings):
    # Point the channel layer at nothing, so every wake-up is lost; only the sweep is left.
    from orchestration.engine.runtime import Engine

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": ["unix:///nonexistent/redis.sock"]}}}
    settings.MAGICBOX_SWEEP_INTERVAL = 1
    plan = await sync_to_async(make_plan)(plan_yaml([sleeper("a", 0.1), sleeper("b", 0.1, ["a"])]))
    run = await sync_to_async(start_run)(plan)
    engine = Engine()
    engine.start_sweeping()  # what `runworker` does at start, before any message
    try:
        run = await wait_for_run(run.pk, timeout=20)
    finally:
        await engine.stop()
    assert run.state == "succeeded"
